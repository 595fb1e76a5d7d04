"""Renewal timing: half-life with jitter, capped exponential backoff, retried past expiry."""

from __future__ import annotations

import random

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.ca import RenewalSchedule

DAY = 24 * 3600.0


@attrs.define
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _schedule(clock: FakeClock, seed: int = 0) -> RenewalSchedule:
    return RenewalSchedule(clock=clock, rng=random.Random(seed))


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    lifetime=st.floats(min_value=2, max_value=10 * DAY),
)
def test_renews_at_half_life_within_one_percent(seed: int, lifetime: float) -> None:
    clock = FakeClock()
    due = _schedule(clock, seed).certificate_installed(not_after=clock.now + lifetime)
    assert clock.now + 0.49 * lifetime <= due <= clock.now + 0.51 * lifetime


def test_jitter_spreads_sidecars_started_together() -> None:
    clock = FakeClock()
    dues = {
        _schedule(clock, seed).certificate_installed(not_after=clock.now + DAY)
        for seed in range(20)
    }
    assert len(dues) == 20
    assert max(dues) - min(dues) > 0.005 * DAY


def test_states_through_a_renewal() -> None:
    clock = FakeClock()
    schedule = _schedule(clock)
    assert schedule.state == "no certificate"
    assert schedule.next_attempt_at is None
    due = schedule.certificate_installed(not_after=clock.now + 100)
    assert schedule.state == "ok"
    assert schedule.delay_until_next_attempt() == pytest.approx(due - clock.now)
    clock.now = due + 5
    assert schedule.delay_until_next_attempt() == 0.0
    schedule.renewal_started()
    assert schedule.state == "renewing"
    schedule.renewal_failed("control plane unreachable")
    assert schedule.state == "failing: control plane unreachable"
    schedule.certificate_installed(not_after=clock.now + 100)
    assert schedule.state == "ok"


def test_backoff_doubles_up_to_thirty_seconds() -> None:
    clock = FakeClock()
    schedule = _schedule(clock)
    schedule.certificate_installed(not_after=clock.now + DAY)
    delays = []
    for _ in range(8):
        retry_at = schedule.renewal_failed("refused")
        assert retry_at is not None
        delays.append(retry_at - clock.now)
        clock.now = retry_at
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_success_resets_the_backoff() -> None:
    clock = FakeClock()
    schedule = _schedule(clock)
    schedule.certificate_installed(not_after=clock.now + DAY)
    for _ in range(4):
        schedule.renewal_failed("refused")
    schedule.certificate_installed(not_after=clock.now + DAY)
    clock.now += DAY / 2
    assert schedule.renewal_failed("refused") == clock.now + 1


def test_retries_go_on_past_expiry_until_the_control_plane_answers() -> None:
    """A stopped control plane (every attempt times out) never ends the retrying."""
    clock = FakeClock()
    schedule = _schedule(clock)
    not_after = clock.now + 6
    clock.now = schedule.certificate_installed(not_after=not_after)
    delays = []
    while clock.now < not_after + 60:
        retry_at = schedule.renewal_failed("no answer within 10s")
        assert retry_at is not None
        delays.append(retry_at - clock.now)
        clock.now = retry_at
    assert min(delays) == 1 and max(delays) == pytest.approx(1.5)  # capped at a quarter of the 6 s life
    assert schedule.state == "expired, renewing: no answer within 10s"
    assert schedule.delay_until_next_attempt() == 0.0
    schedule.certificate_installed(not_after=clock.now + 6)  # the control plane is back
    assert schedule.state == "ok"


def test_a_refusal_before_expiry_is_retried() -> None:
    clock = FakeClock()
    schedule = _schedule(clock)
    schedule.certificate_installed(not_after=clock.now + 60)
    assert schedule.renewal_failed("refused (403)", refused=True) == clock.now + 1


def test_a_refusal_after_expiry_ends_the_renewal() -> None:
    clock = FakeClock()
    schedule = _schedule(clock)
    schedule.certificate_installed(not_after=clock.now + 60)
    clock.now += 60
    assert schedule.renewal_failed("no answer", refused=False) is not None
    assert schedule.renewal_failed("refused (403): expired", refused=True) is None
    assert schedule.state == "expired"
    assert schedule.next_attempt_at is None
    assert schedule.delay_until_next_attempt() is None


def test_expiry_shows_even_without_a_failure() -> None:
    clock = FakeClock()
    schedule = _schedule(clock)
    schedule.certificate_installed(not_after=clock.now + 10)
    clock.now += 10
    assert schedule.state == "expired, renewing: not yet tried"


def test_installing_an_expired_certificate_is_an_error() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="expired"):
        _schedule(clock).certificate_installed(not_after=clock.now)
