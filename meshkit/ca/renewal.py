"""When to renew a workload certificate (pure: an injected clock and random source).

Istio's rule: renew at 50 % of the certificate's life, with about 1 % jitter so
that sidecars started together do not all renew in the same second.  The life
is measured from when the certificate was installed (not from its notBefore,
which the issuer backdates for clock skew) to its notAfter.

After a failed attempt, retry after 1 s, 2 s, 4 s ... capped at 30 s, or at a
quarter of the certificate's life when that is shorter, for as long as the
owner lives: past notAfter too.  A stopped or unreachable control plane never
makes a sidecar give up; its just-expired certificate is still accepted for
``meshkit.ca.spiffe.EXPIRY_GRACE`` seconds, by peers and by the issuer, so
the first attempt after the control plane answers again renews it.  The only
end is ``renewal_failed(..., refused=True)`` once the certificate has expired:
the control plane itself answered that it will not renew this one (expired
beyond the grace), and only a fresh bootstrap can help (``next_attempt_at``
is None, the state ``expired``).

States, for ``/metrics`` and logs: ``ok``, ``renewing``, ``failing: <reason>``,
``expired, renewing: <reason>`` (past notAfter, still trying), ``expired``
(given up).  ``no certificate`` before the first install.

The sidecar's trio loop is thin: sleep ``delay_until_next_attempt()``, call
``renewal_started()``, try, then ``certificate_installed(...)`` or
``renewal_failed(reason, refused=...)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from meshkit.api.backoff import Backoff

RENEW_AT_FRACTION = 0.5
JITTER_FRACTION = 0.01
RETRY_BACKOFF = Backoff(initial=1.0, cap=30.0)
# No retry waits longer than this fraction of the certificate's life.
RETRY_CAP_FRACTION = 0.25

Clock = Callable[[], float]


@attrs.define(kw_only=True)
class RenewalSchedule:
    """The renewal state of one certificate; all times are ``clock()`` seconds (wall time)."""

    clock: Clock
    rng: random.Random = attrs.field(factory=random.Random)
    jitter_fraction: float = JITTER_FRACTION
    retry_backoff: Backoff = RETRY_BACKOFF
    _not_after: float | None = attrs.field(default=None, init=False)
    _retry_cap: float = attrs.field(default=0.0, init=False)
    _next_attempt: float | None = attrs.field(default=None, init=False)
    _failures: int = attrs.field(default=0, init=False)
    _last_failure: str | None = attrs.field(default=None, init=False)
    _renewing: bool = attrs.field(default=False, init=False)

    def certificate_installed(self, *, not_after: float) -> float:
        """Record a fresh certificate; returns when its renewal is due."""
        now = self.clock()
        if not_after <= now:
            raise ValueError("the installed certificate has already expired")
        life = not_after - now
        fraction = RENEW_AT_FRACTION + self.rng.uniform(-self.jitter_fraction, self.jitter_fraction)
        self._not_after = not_after
        self._retry_cap = life * RETRY_CAP_FRACTION
        self._next_attempt = now + life * fraction
        self._failures = 0
        self._last_failure = None
        self._renewing = False
        return self._next_attempt

    def renewal_started(self) -> None:
        """An attempt is under way (for reporting)."""
        self._renewing = True

    def renewal_failed(self, reason: str, *, refused: bool = False) -> float | None:
        """Record a failed attempt; returns when to retry.

        None only when the control plane ``refused`` to renew an expired
        certificate (or before the first one): renewal is impossible.
        """
        self._renewing = False
        self._failures += 1
        self._last_failure = reason
        now = self.clock()
        if self._not_after is None or (refused and now >= self._not_after):
            self._next_attempt = None
            return None
        delay = min(self.retry_backoff.delay(self._failures - 1), self._retry_cap)
        self._next_attempt = now + delay
        return self._next_attempt

    @property
    def next_attempt_at(self) -> float | None:
        """When to try next, or None (no certificate yet, or renewal refused after expiry)."""
        return self._next_attempt

    def delay_until_next_attempt(self) -> float | None:
        """Seconds to sleep before the next attempt (0 if due), or None if there is none."""
        due = self.next_attempt_at
        return None if due is None else max(0.0, due - self.clock())

    @property
    def state(self) -> str:
        if self._not_after is None:
            return "no certificate"
        if self.clock() >= self._not_after:
            if self._next_attempt is None:
                return "expired"
            return f"expired, renewing: {self._last_failure or 'not yet tried'}"
        if self._renewing:
            return "renewing"
        if self._last_failure is not None:
            return f"failing: {self._last_failure}"
        return "ok"
