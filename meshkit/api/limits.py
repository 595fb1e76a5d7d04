"""Local rate limits (Envoy's local rate limit filter, in small): token buckets that
the called service's inbound sidecar keeps, each instance its own.

A ``RateLimit`` is Envoy's bucket: it holds at most ``max_tokens`` tokens,
starts full, and gets ``tokens_per_fill`` tokens back every ``fill_interval``
seconds; each admitted request takes one.  ``per == "caller"`` gives every
caller (the verified peer identity) a bucket of its own; a ``match`` narrows
the limit to the requests of one route.  ``declared_at`` says where the limit
comes from (``Meshfile.py:12``, or ``meshkit limit l3``) so a refusal can say so.

``bucket_shape`` turns a rate as people write it ("100 per second") into
Envoy's discrete fills with a fill interval of at least 50 ms (Envoy's
minimum), exactly: 100/s fills 5 tokens every 50 ms, 30/s 2 every 66.7 ms.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

import attrs

from meshkit.api.routes import RequestMatch

LimitKey = Literal["service", "caller"]
LIMIT_KEYS: tuple[LimitKey, ...] = ("service", "caller")
MIN_FILL_INTERVAL = 0.05
"""Envoy refuses a ``fill_interval`` under 50 ms."""


@attrs.frozen(kw_only=True)
class RateLimit:
    """A token bucket on the requests to ``service`` (see the module's docstring)."""

    service: str
    max_tokens: int
    tokens_per_fill: int
    fill_interval: float
    per: LimitKey = "service"
    match: RequestMatch | None = None
    declared_at: str = ""

    @classmethod
    def from_rate(
        cls, service: str, count: int, period: float, *, burst: int | None = None, **more: Any
    ) -> Self:
        """The bucket for ``count`` requests every ``period`` seconds, ``burst`` at once
        (``count`` by default); ``more`` are the other fields."""
        tokens, interval = bucket_shape(count, period)
        return cls(
            service=service,
            max_tokens=count if burst is None else burst,
            tokens_per_fill=tokens,
            fill_interval=interval,
            **more,
        )

    @property
    def rate(self) -> float:
        """Requests per second allowed in the long run."""
        return self.tokens_per_fill / self.fill_interval

    def same_scope(self, other: RateLimit) -> bool:
        """Both limit the same requests the same way (a runtime limit then replaces the other)."""
        return (self.service, self.per, self.match) == (other.service, other.per, other.match)


def bucket_shape(count: int, period: float) -> tuple[int, float]:
    """``(tokens_per_fill, fill_interval)`` for ``count`` requests every ``period`` seconds."""
    if count < 1 or not period > 0:
        raise ValueError(
            f"a rate needs a count of at least 1 and a period above 0 ({count}/{period}s)"
        )
    per_token = period / count
    tokens = max(1, math.ceil(MIN_FILL_INTERVAL / per_token - 1e-9))
    return tokens, per_token * tokens
