"""Whether a failed attempt is tried again, and after how long (Envoy's retry policy).

``RetryPolicy(rule, random=...)`` answers ``decide(...)`` after each attempt
with a ``RetryDecision``: retry (after ``delay`` seconds) or not, and why.  It
owns no timer and no socket; the caller also asks the destination's retry
budget and circuit breaker before it acts on a "yes".

The rules:

* only idempotent methods (GET HEAD OPTIONS PUT DELETE TRACE) are retried,
  unless the rule says ``retry_non_idempotent``;
* a request whose body was not buffered whole, or is over 64 KiB, is not;
* at most ``attempts`` retries; none once the route's time is up;
* an outcome is retriable when ``retry_on`` names it: ``5xx``,
  ``gateway-error`` (502/503/504), ``connect-failure``, ``refused-stream``,
  ``reset``, a listed status code, or a gRPC status name matched against
  ``grpc-status`` in the response headers or trailers; a per-try timeout counts
  as a 504;
* the wait is full jitter: uniform in ``[0, min(cap, base * 2**n)]`` before
  retry ``n + 1``.
"""

from __future__ import annotations

import random as random_module
from typing import Literal

import attrs

from meshkit.api import GRPC_STATUS_CODES, MAX_RETRY_BODY_BYTES, RetryRule
from meshkit.api.backoff import Backoff
from meshkit.proxy.codec.messages import Headers, header_value

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
GATEWAY_ERRORS = frozenset({502, 503, 504})

Failure = Literal["connect-failure", "refused-stream", "reset", "per-try-timeout"]


@attrs.frozen(kw_only=True)
class AttemptOutcome:
    """How one attempt ended: a response (``status``, maybe ``grpc_status``) or a ``failure``."""

    status: int | None = None
    grpc_status: int | None = None
    failure: Failure | None = None

    @classmethod
    def response(
        cls, status: int, headers: Headers | None = None, trailers: Headers | None = None
    ) -> AttemptOutcome:
        """A response; ``grpc-status`` is read from the trailers, else the headers."""
        raw = header_value(trailers or [], b"grpc-status")
        if raw is None:
            raw = header_value(headers or [], b"grpc-status")
        grpc = int(raw) if raw is not None and raw.strip().isdigit() else None
        return cls(status=status, grpc_status=grpc)

    @classmethod
    def failed(cls, failure: Failure) -> AttemptOutcome:
        return cls(failure=failure)

    @property
    def succeeded(self) -> bool:
        """A response that is neither a 5xx nor a gRPC error."""
        return (
            self.failure is None
            and self.status is not None
            and self.status < 500
            and not self.grpc_status
        )


@attrs.frozen(kw_only=True)
class RetryDecision:
    retry: bool
    delay: float = 0.0
    reason: str = ""


class RetryPolicy:
    """The retry decisions of one route rule."""

    def __init__(self, rule: RetryRule, *, random: random_module.Random) -> None:
        self.rule = rule
        self._backoff = Backoff(initial=rule.backoff_base, cap=rule.backoff_max, random=random)
        conditions = set(rule.retry_on)
        self._any_5xx = "5xx" in conditions
        self._gateway = "gateway-error" in conditions
        self._failures = conditions & {"connect-failure", "refused-stream", "reset"}
        self._statuses = frozenset(rule.status_codes)
        self._grpc = frozenset(
            GRPC_STATUS_CODES[name] for name in conditions if name in GRPC_STATUS_CODES
        )

    def request_retryable(self, method: bytes, buffered_body_bytes: int | None) -> bool:
        """Whether this request may ever be retried.

        ``buffered_body_bytes`` is the size of the whole body held for a retry,
        or None when the body was streamed without being kept.
        """
        if buffered_body_bytes is None or buffered_body_bytes > MAX_RETRY_BODY_BYTES:
            return False
        return self.rule.retry_non_idempotent or method.upper() in IDEMPOTENT_METHODS

    def is_retriable(self, outcome: AttemptOutcome) -> bool:
        """Whether ``retry_on`` names what happened."""
        if outcome.failure == "per-try-timeout":
            return self._any_5xx or self._gateway or 504 in self._statuses
        if outcome.failure is not None:
            return outcome.failure in self._failures
        status = outcome.status
        if status is not None:
            if self._any_5xx and status >= 500:
                return True
            if self._gateway and status in GATEWAY_ERRORS:
                return True
            if status in self._statuses:
                return True
        return outcome.grpc_status is not None and outcome.grpc_status in self._grpc

    def backoff(self, retries_done: int) -> float:
        """Seconds to wait before the next retry, ``retries_done`` retries having been made."""
        return self._backoff.delay(retries_done)

    def decide(
        self,
        *,
        retries_done: int,
        outcome: AttemptOutcome,
        method: bytes,
        buffered_body_bytes: int | None,
        time_left: float | None = None,
    ) -> RetryDecision:
        """Retry after the attempt that ended with ``outcome``, or not (and why not).

        ``time_left`` is what remains of the route's timeout (None: no timeout);
        no retry is made whose wait alone would use it up.
        """
        if outcome.succeeded:
            return RetryDecision(retry=False, reason="succeeded")
        if not self.is_retriable(outcome):
            return RetryDecision(retry=False, reason="not a retry_on condition")
        if not self.request_retryable(method, buffered_body_bytes):
            if buffered_body_bytes is None or buffered_body_bytes > MAX_RETRY_BODY_BYTES:
                return RetryDecision(retry=False, reason="request body too large to retry")
            return RetryDecision(
                retry=False, reason=f"{method.decode('ascii', 'replace')} is not idempotent"
            )
        if retries_done >= self.rule.attempts:
            return RetryDecision(retry=False, reason=f"retries exhausted ({self.rule.attempts})")
        delay = self.backoff(retries_done)
        if time_left is not None and delay >= time_left:
            return RetryDecision(retry=False, reason="no time left for a retry")
        return RetryDecision(retry=True, delay=delay, reason="retrying")
