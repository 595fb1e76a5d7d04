"""Health probe state machine with Kubernetes' semantics.  Pure, clock passed in.

* The first probe runs ``initial_delay`` seconds after the app started, then
  one every ``period`` seconds (counted from the previous probe's start).
* ``success_threshold`` consecutive successes make an instance healthy;
  ``failure_threshold`` consecutive failures make it unhealthy.
* A starting instance stays "starting" until either threshold is reached.
* Until its first success, a starting instance is also polled every
  ``STARTUP_POLL`` seconds between the scheduled probes, so that it is found
  healthy within that long of listening rather than up to a ``period`` later.
  A failed poll counts for nothing: only the scheduled probes count failures,
  so ``failure_threshold`` and ``period`` mean what they say.

The I/O that performs a probe lives in ``meshkit.runtime.probes``.
"""

from __future__ import annotations

from typing import Literal

from meshkit.dsl.spec import HealthCheck

ProbeVerdict = Literal["starting", "healthy", "unhealthy"]

DEFAULT_CHECK = HealthCheck(kind="tcp")
STARTUP_POLL = 0.1


def check_for(health: HealthCheck | None) -> HealthCheck:
    """The check to run: the service's own, or a TCP connect when it declares none."""
    return DEFAULT_CHECK if health is None else health


class ProbeStateMachine:
    """Counts consecutive probe results and says when the verdict changes."""

    def __init__(self, check: HealthCheck, *, started_at: float) -> None:
        self.check = check
        self.verdict: ProbeVerdict = "starting"
        self.last_error: str | None = None
        self._due = started_at + check.initial_delay  # the next scheduled probe
        self._poll_at = self._due
        self._counts = True  # whether the probe under way is a scheduled one
        self._successes = 0
        self._failures = 0
        self._ever_healthy = False

    @property
    def next_probe_at(self) -> float:
        if self.verdict == "starting" and not self._ever_healthy and self._successes == 0:
            return min(self._due, self._poll_at)
        return self._due

    def probe_started(self, now: float) -> None:
        """A probe begins at ``now``: the next one is due a period later (or a poll sooner)."""
        self._counts = now >= self._due
        if self._counts:
            self._due = now + self.check.period
        self._poll_at = now + STARTUP_POLL

    def record(self, *, success: bool, error: str | None = None) -> ProbeVerdict | None:
        """Count one result; return the new verdict if it changed, else None."""
        if not success and not self._counts:
            self.last_error = error
            return None
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
        self._ever_healthy = self._ever_healthy or verdict == "healthy"
        return verdict
