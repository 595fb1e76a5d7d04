"""BodyPace: how long a request body may make a sidecar wait (stall and trickle)."""

from __future__ import annotations

from meshkit.proxy.policy.pace import BodyPace


def test_a_stall_gets_one_timeout_whatever_was_received() -> None:
    pace = BodyPace(timeout=30, min_rate=500)
    assert pace.next_wait(0) == 30
    pace.waited_for(0.5)
    assert pace.next_wait(1_000_000) == 30
    assert "stalled: nothing received for 30s" in pace.describe(1_000_000, 30)


def test_a_trickle_runs_out_of_its_allowance() -> None:
    pace = BodyPace(timeout=20, min_rate=500)
    received = 0
    # One byte a second: each wait is short, but they add up past 20 s + 1 s per 500 bytes.
    while (wait := pace.next_wait(received)) >= 1:
        pace.waited_for(1)
        received += 1
    assert 19 <= pace.waited <= 21 and received == pace.waited
    assert "too slow: 20 bytes in 20s" in pace.describe(received, wait)
    assert "at least 500 bytes/s after the first 20s" in pace.describe(received, wait)


def test_a_fast_body_earns_its_waits() -> None:
    pace = BodyPace(timeout=20, min_rate=500)
    pace.waited_for(19)
    assert pace.next_wait(0) == 1
    assert pace.next_wait(5000) == 11  # 20 s + 10 s earned - 19 s waited
    assert pace.next_wait(50_000) == 20  # never more than the stall bound at a time


def test_without_a_rate_only_stalls_count() -> None:
    pace = BodyPace(timeout=5, min_rate=0)
    pace.waited_for(1000)
    assert pace.next_wait(1) == 5
