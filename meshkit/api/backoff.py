"""The one backoff of meshkit: capped exponential delays, with full jitter on request.

Pure: no clock, no event loop; randomness is injected.  Every wait before
trying again uses it:

* restarting a crashed app (``runtime.policy.restart``, from the Meshfile's
  ``restart(backoff=, max_backoff=)``);
* reconnecting a sidecar to the control plane, and asking it for a first
  certificate (``proxy.sidecar``, ``proxy.identity``);
* retrying a certificate renewal (``ca.renewal``);
* retrying a request (``proxy.policy.retry``: full jitter, as Envoy does).

``Backoff.delay(n)`` is the wait before try ``n + 1`` (``n`` failures so far):
``min(cap, initial * 2**n)``, or a uniform draw in ``[0, that]`` when the
backoff has a ``random`` source.  ``BackoffCounter`` counts the failures for
callers that only say "failed again" and "succeeded".
"""

from __future__ import annotations

import random as random_module
from typing import NamedTuple

MAX_DOUBLINGS = 62  # 2**n stays a finite float and the cap wins long before


class Backoff(NamedTuple):
    """Delays doubling from ``initial`` up to ``cap``; full jitter when given ``random``.

    A behaviour, not wire vocabulary: no attrs class, so it never reaches JSON.
    """

    initial: float
    cap: float
    random: random_module.Random | None = None

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 for the first wait)."""
        ceiling = min(self.cap, self.initial * 2.0 ** min(max(failures, 0), MAX_DOUBLINGS))
        if self.random is None:
            return ceiling
        return self.random.uniform(0.0, ceiling)


CONTROL_PLANE_BACKOFF = Backoff(initial=0.1, cap=5.0)
"""A sidecar reconnecting to the control plane, or asking it for a first certificate."""


class BackoffCounter:
    """A ``Backoff`` and the failures counted so far; ``reset()`` after a success."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.failures = 0

    def next_delay(self) -> float:
        """The wait after one more failure."""
        delay = self.backoff.delay(self.failures)
        self.failures = min(self.failures + 1, MAX_DOUBLINGS)
        return delay

    def reset(self) -> None:
        self.failures = 0
