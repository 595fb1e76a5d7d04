"""Health probe state machine with Kubernetes' semantics.  Pure, clock passed in.

* The first probe runs ``initial_delay`` seconds after the app started, then
  one every ``period`` seconds (counted from the previous probe's start).
* ``success_threshold`` consecutive successes make an instance healthy;
  ``failure_threshold`` consecutive failures make it unhealthy.
* A starting instance stays "starting" until either threshold is reached.

The I/O that performs a probe lives in ``meshkit.runtime.probes``.
"""

from __future__ import annotations

from typing import Literal

from meshkit.dsl.spec import HealthCheck

ProbeVerdict = Literal["starting", "healthy", "unhealthy"]

DEFAULT_CHECK = HealthCheck(kind="tcp")


def check_for(health: HealthCheck | None) -> HealthCheck:
    """The check to run: the service's own, or a TCP connect when it declares none."""
    return DEFAULT_CHECK if health is None else health


class ProbeStateMachine:
    """Counts consecutive probe results and says when the verdict changes."""

    def __init__(self, check: HealthCheck, *, started_at: float) -> None:
        self.check = check
        self.verdict: ProbeVerdict = "starting"
        self.next_probe_at = started_at + check.initial_delay
        self.last_error: str | None = None
        self._successes = 0
        self._failures = 0

    def probe_started(self, now: float) -> None:
        """A probe begins at ``now``: the next one is due a period later."""
        self.next_probe_at = now + self.check.period

    def record(self, *, success: bool, error: str | None = None) -> ProbeVerdict | None:
        """Count one result; return the new verdict if it changed, else None."""
        if success:
            self._successes += 1
            self._failures = 0
            self.last_error = None
            if self.verdict != "healthy" and self._successes >= self.check.success_threshold:
                return self._become("healthy")
        else:
            self._failures += 1
            self._successes = 0
            self.last_error = error
            if self.verdict != "unhealthy" and self._failures >= self.check.failure_threshold:
                return self._become("unhealthy")
        return None

    def _become(self, verdict: ProbeVerdict) -> ProbeVerdict:
        self.verdict = verdict
        return verdict
