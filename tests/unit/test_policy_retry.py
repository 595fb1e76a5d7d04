"""Retry decisions, backoff bounds and the retry budget (fake clock, seeded random)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.api import MAX_RETRY_BODY_BYTES, BudgetSettings, RetryRule
from meshkit.proxy.policy.budget import RetryBudget
from meshkit.proxy.policy.retry import AttemptOutcome, RetryPolicy


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy(**overrides: object) -> RetryPolicy:
    rule = RetryRule(**overrides)  # type: ignore[arg-type]
    return RetryPolicy(rule, random=random.Random(1))


FIVE_HUNDRED = AttemptOutcome.response(500)


@pytest.mark.parametrize(
    ("retry_on", "codes", "outcome", "expected"),
    [
        (("5xx",), (), AttemptOutcome.response(500), True),
        (("5xx",), (), AttemptOutcome.response(599), True),
        (("5xx",), (), AttemptOutcome.response(429), False),
        (("gateway-error",), (), AttemptOutcome.response(502), True),
        (("gateway-error",), (), AttemptOutcome.response(504), True),
        (("gateway-error",), (), AttemptOutcome.response(500), False),
        ((), (429,), AttemptOutcome.response(429), True),
        (("connect-failure",), (), AttemptOutcome.failed("connect-failure"), True),
        (("connect-failure",), (), AttemptOutcome.failed("reset"), False),
        (("reset",), (), AttemptOutcome.failed("reset"), True),
        (("refused-stream",), (), AttemptOutcome.failed("refused-stream"), True),
        (("5xx",), (), AttemptOutcome.failed("per-try-timeout"), True),
        (("gateway-error",), (), AttemptOutcome.failed("per-try-timeout"), True),
        (("connect-failure",), (), AttemptOutcome.failed("per-try-timeout"), False),
        (
            ("unavailable",),
            (),
            AttemptOutcome.response(200, trailers=[(b"grpc-status", b"14")]),
            True,
        ),
        (("unavailable",), (), AttemptOutcome.response(200, [(b"grpc-status", b"14")]), True),
        (
            ("unavailable",),
            (),
            AttemptOutcome.response(200, trailers=[(b"grpc-status", b"13")]),
            False,
        ),
        (("internal",), (), AttemptOutcome.response(200, trailers=[(b"grpc-status", b"13")]), True),
        (("resource-exhausted",), (), AttemptOutcome.response(200, [(b"grpc-status", b"8")]), True),
        (("deadline-exceeded",), (), AttemptOutcome.response(200, [(b"grpc-status", b"4")]), True),
        (("cancelled",), (), AttemptOutcome.response(200, [(b"grpc-status", b"1")]), True),
    ],
)
def test_retry_on_conditions(
    retry_on: tuple[str, ...], codes: tuple[int, ...], outcome: AttemptOutcome, expected: bool
) -> None:
    assert policy(retry_on=retry_on, status_codes=codes).is_retriable(outcome) is expected


def test_trailers_win_over_headers_for_grpc_status() -> None:
    outcome = AttemptOutcome.response(200, [(b"grpc-status", b"14")], [(b"grpc-status", b"0")])
    assert outcome.grpc_status == 0
    assert outcome.succeeded


def test_only_idempotent_methods_unless_the_route_says_so() -> None:
    strict = policy(retry_on=("5xx",))
    for method in (b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE", b"get"):
        assert strict.request_retryable(method, 0)
    for method in (b"POST", b"PATCH", b"CONNECT"):
        assert not strict.request_retryable(method, 0)
    decision = strict.decide(
        retries_done=0, outcome=FIVE_HUNDRED, method=b"POST", buffered_body_bytes=10
    )
    assert (decision.retry, decision.reason) == (False, "POST is not idempotent")
    lenient = policy(retry_on=("5xx",), retry_non_idempotent=True)
    assert lenient.decide(
        retries_done=0, outcome=FIVE_HUNDRED, method=b"POST", buffered_body_bytes=10
    ).retry


def test_bodies_over_64_kib_or_not_buffered_are_never_retried() -> None:
    rule = policy(retry_on=("5xx",), retry_non_idempotent=True)
    assert rule.request_retryable(b"PUT", MAX_RETRY_BODY_BYTES)
    assert not rule.request_retryable(b"PUT", MAX_RETRY_BODY_BYTES + 1)
    assert not rule.request_retryable(b"PUT", None)
    decision = rule.decide(
        retries_done=0, outcome=FIVE_HUNDRED, method=b"PUT", buffered_body_bytes=None
    )
    assert (decision.retry, decision.reason) == (False, "request body too large to retry")


def test_attempts_count_retries_after_the_first_try() -> None:
    rule = policy(attempts=2, retry_on=("5xx",))
    decisions = [
        rule.decide(retries_done=n, outcome=FIVE_HUNDRED, method=b"GET", buffered_body_bytes=0)
        for n in range(3)
    ]
    assert [d.retry for d in decisions] == [True, True, False]
    assert decisions[2].reason == "retries exhausted (2)"


def test_success_and_unlisted_failures_are_not_retried() -> None:
    rule = policy(retry_on=("connect-failure",))
    ok = rule.decide(
        retries_done=0, outcome=AttemptOutcome.response(200), method=b"GET", buffered_body_bytes=0
    )
    assert (ok.retry, ok.reason) == (False, "succeeded")
    other = rule.decide(retries_done=0, outcome=FIVE_HUNDRED, method=b"GET", buffered_body_bytes=0)
    assert (other.retry, other.reason) == (False, "not a retry_on condition")


def test_no_retry_whose_wait_would_use_up_the_time_left() -> None:
    rule = policy(retry_on=("5xx",), backoff_base=1.0, backoff_max=1.0)
    decision = rule.decide(
        retries_done=0, outcome=FIVE_HUNDRED, method=b"GET", buffered_body_bytes=0, time_left=0.0
    )
    assert (decision.retry, decision.reason) == (False, "no time left for a retry")



@given(
    retries_done=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0.001, max_value=5.0),
    cap=st.floats(min_value=0.001, max_value=50.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_full_jitter_within_bounds(
    retries_done: int, base: float, cap: float, seed: int
) -> None:
    rule = RetryPolicy(RetryRule(backoff_base=base, backoff_max=cap), random=random.Random(seed))
    delay = rule.backoff(retries_done)
    assert 0.0 <= delay <= min(cap, base * 2.0**retries_done)


def test_backoff_defaults_and_determinism() -> None:
    first = RetryPolicy(RetryRule(), random=random.Random(5))
    second = RetryPolicy(RetryRule(), random=random.Random(5))
    delays = [first.backoff(n) for n in range(8)]
    assert delays == [second.backoff(n) for n in range(8)]
    assert all(delay <= 0.25 for delay in delays)
    assert delays[0] <= 0.025


def test_budget_allows_twenty_percent_plus_ten_per_second_over_ten_seconds() -> None:
    clock = FakeClock()
    budget = RetryBudget(BudgetSettings(), clock=clock)
    for _ in range(1000):
        budget.record_request()
    assert budget.allowance() == pytest.approx(300.0)
    granted = sum(budget.try_withdraw() for _ in range(400))
    assert granted == 300
    assert not budget.try_withdraw()
    assert budget.retries_in_window() == 300


def test_budget_window_slides() -> None:
    clock = FakeClock()
    budget = RetryBudget(BudgetSettings(percent=20, min_per_second=0, window=10), clock=clock)
    for _ in range(100):
        budget.record_request()
    assert sum(budget.try_withdraw() for _ in range(50)) == 20
    clock.now += 5
    assert not budget.try_withdraw()
    clock.now += 5.5
    assert budget.allowance() == 0
    assert budget.retries_in_window() == 0
    for _ in range(10):
        budget.record_request()
    assert sum(budget.try_withdraw() for _ in range(5)) == 2


def test_a_quiet_service_may_still_retry_at_the_minimum_rate() -> None:
    budget = RetryBudget(BudgetSettings(percent=20, min_per_second=1, window=10), clock=FakeClock())
    assert sum(budget.try_withdraw() for _ in range(20)) == 10
