"""StreamAdmission: a listener's HTTP/2 streams in flight, with room kept for others."""

from __future__ import annotations

from meshkit.proxy.policy.admission import StreamAdmission


def test_one_connection_gets_at_most_half_the_listener() -> None:
    admission = StreamAdmission()
    admitted = sum(admission.try_admit("a", limit=10) for _ in range(20))
    assert admitted == 5
    assert admission.try_admit("b", limit=10)


def test_beyond_half_each_connection_gets_its_share_with_one_more_to_come() -> None:
    admission = StreamAdmission()
    held = {}
    for name in "ab":
        held[name] = 0
        while admission.try_admit(name, limit=12):
            held[name] += 1
    # a: up to half (6); b: 12 // 3, its share if a third came, and the third gets in.
    assert held == {"a": 6, "b": 4}
    assert admission.try_admit("c", limit=12)


def test_the_bound_holds_whatever_the_number_of_connections() -> None:
    admission = StreamAdmission()
    admitted = sum(admission.try_admit(number, limit=40) for number in range(1000))
    assert admitted == admission.total <= 40
    assert not admission.try_admit("late", limit=admission.total)


def test_released_streams_make_room_again() -> None:
    admission = StreamAdmission()
    while admission.try_admit("a", limit=4):
        pass
    assert admission.total == 2
    admission.release("a")
    admission.release("a")
    assert admission.total == 0
    admission.release("a")  # nothing held: no effect
    assert admission.total == 0
    assert admission.try_admit("a", limit=4)


def test_one_stream_per_connection_fills_the_bound_to_the_last_slot() -> None:
    # HTTP/1.1 connections each hold one request in flight: all of the bound is theirs.
    admission = StreamAdmission()
    admitted = sum(admission.try_admit(number, limit=4) for number in range(6))
    assert admitted == admission.total == 4
