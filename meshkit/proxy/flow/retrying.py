"""One try of the pipeline: its response hook, and whether another try may follow.

``TryState.on_response`` sees each endpoint response head: it records the
instance's health for outlier detection, then commits the response (no
timeout cuts it after that) or holds it back when the retry policy, the retry
budget and the breaker's retry limit all admit another try (``decide_retry``).
Admission takes the breaker's retry ticket at once, so ``max_retries`` bounds
the retries in flight (backoff included) whatever the concurrency; the
pipeline releases it when the retried try ends.
``failure_of`` names how a try that sent nothing to the client failed.
"""

from __future__ import annotations

import math

import attrs
import trio

from meshkit.api import RouteRule
from meshkit.proxy.codec.messages import ResponseHead
from meshkit.proxy.config import Endpoint
from meshkit.proxy.flow.attempt import Outcome
from meshkit.proxy.policy.breaker import Ticket
from meshkit.proxy.policy.destinations import DestinationState
from meshkit.proxy.policy.retry import AttemptOutcome, Failure, RetryDecision, RetryPolicy
from meshkit.proxy.policy.rewrite import apply_header_ops

FAILURE_OF_FLAG: dict[str, Failure] = {
    "UF": "connect-failure",
    "UC": "reset",
    "UT": "per-try-timeout",
}


class TryState:
    """The response hook of one attempt: commit the response, or hold it for a retry."""

    def __init__(
        self,
        *,
        rule: RouteRule,
        destination: DestinationState,
        endpoint: Endpoint,
        policy: RetryPolicy | None,
        retries_done: int,
        method: bytes,
        buffered_bytes: int | None,
        route_scope: trio.CancelScope,
        try_scope: trio.CancelScope,
        held: HeldRetry,
    ) -> None:
        self.rule = rule
        self.destination = destination
        self.endpoint = endpoint
        self.policy = policy
        self.retries_done = retries_done
        self.method = method
        self.buffered_bytes = buffered_bytes
        self.route_scope = route_scope
        self.try_scope = try_scope
        self.held = held
        self.retry: RetryDecision | None = None
        self.exhausted = False
        self.timed_out = False

    def on_response(self, head: ResponseHead) -> ResponseHead | None:
        outcome = AttemptOutcome.response(head.status, head.headers)
        outlier = self.destination.outlier
        if head.status >= 500:
            outlier.record_failure(self.endpoint.instance)
        else:
            outlier.record_success(self.endpoint.instance)
        if self.route_scope.cancel_called or self.try_scope.cancel_called:
            self.timed_out = True
            return None
        if not outcome.succeeded and self.policy is not None:
            decision, ticket = decide_retry(
                self.policy,
                self.destination,
                outcome=outcome,
                retries_done=self.retries_done,
                method=self.method,
                buffered_bytes=self.buffered_bytes,
                deadline=self.route_scope.deadline,
            )
            if decision.retry:
                self.retry = self.held.hold(decision, ticket)
                return None
            self.exhausted = self.policy.is_retriable(outcome)
        # Committed: the response now flows to the client, no timeout cuts it.
        # (A deadline moved costs as much as a scope entered: only the ones that change.)
        if self.route_scope.deadline != math.inf:
            self.route_scope.deadline = math.inf
        if self.try_scope.deadline != math.inf:
            self.try_scope.deadline = math.inf
        if self.rule.response_headers.empty:
            return head
        return attrs.evolve(
            head, headers=apply_header_ops(head.headers, self.rule.response_headers)
        )


class HeldRetry:
    """The breaker ticket of the admitted retry, held through its backoff and its try.

    Released when that try ends, or when the pipeline leaves the route in any
    way (an answer, a timeout, a cancellation) before it ran.
    """

    def __init__(self) -> None:
        self._ticket: Ticket | None = None

    def hold(self, decision: RetryDecision | None, ticket: Ticket | None) -> RetryDecision | None:
        """Keep ``ticket`` (the admission of ``decision``); pass the decision on."""
        self.release()
        self._ticket = ticket
        return decision

    def release(self) -> None:
        if self._ticket is not None:
            self._ticket.release()
            self._ticket = None

    def __enter__(self) -> HeldRetry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def decide_retry(
    policy: RetryPolicy,
    destination: DestinationState,
    *,
    outcome: AttemptOutcome,
    retries_done: int,
    method: bytes,
    buffered_bytes: int | None,
    deadline: float,
) -> tuple[RetryDecision, Ticket | None]:
    """The retry policy's answer, then the breaker's and the budget's admission.

    An admitted retry comes with its breaker ticket (None when refused).
    """
    time_left = None if deadline == math.inf else max(0.0, deadline - trio.current_time())
    decision = policy.decide(
        retries_done=retries_done,
        outcome=outcome,
        method=method,
        buffered_body_bytes=buffered_bytes,
        time_left=time_left,
    )
    if not decision.retry:
        return decision, None
    ticket = destination.breaker.try_start_retry()
    if ticket is None:
        reason = destination.breaker.overflow_reason("retries")
        return RetryDecision(retry=False, reason=reason), None
    if not destination.budget.try_withdraw():
        ticket.release()
        return RetryDecision(retry=False, reason="retry budget spent"), None
    return decision, ticket


def failure_of(
    outcome: Outcome | None, state: TryState, per_try: float | None
) -> tuple[Failure, str] | None:
    """How an unanswered try failed; None when its response was held for a retry."""
    if outcome is not None and state.retry is None and not state.timed_out:
        return FAILURE_OF_FLAG.get(outcome.flag, "reset"), outcome.reason
    if outcome is None or state.timed_out:
        if per_try is None:
            return "per-try-timeout", "no answer in time"
        return "per-try-timeout", f"no answer within the per-try timeout of {per_try:g}s"
    return None
