"""Restart policy: whether a process that exited is started again, and when.

Pure, with the clock passed in.  The delay (``meshkit.api.backoff``) doubles
from ``backoff_initial`` up to ``backoff_max`` and resets once a run lasted ``reset_after`` seconds.  A
restart loop (``loop_threshold`` restarts within ``loop_window`` seconds) is
reported, not punished: the process is still restarted with backoff.
"""

from __future__ import annotations

from collections import deque

import attrs

from meshkit.api.backoff import Backoff, BackoffCounter
from meshkit.dsl.spec import RestartPolicy

LOOP_THRESHOLD = 5
LOOP_WINDOW = 60.0


@attrs.frozen(kw_only=True)
class RestartDecision:
    """What to do after an exit: restart after ``delay`` seconds, or not at all."""

    restart: bool
    delay: float = 0.0
    in_restart_loop: bool = False
    reason: str = ""


class RestartBackoff:
    """Tracks one process's runs and decides about its restarts."""

    def __init__(
        self,
        policy: RestartPolicy,
        *,
        loop_threshold: int = LOOP_THRESHOLD,
        loop_window: float = LOOP_WINDOW,
    ) -> None:
        self.policy = policy
        self.loop_threshold = loop_threshold
        self.loop_window = loop_window
        self._delays = BackoffCounter(
            Backoff(initial=policy.backoff_initial, cap=policy.backoff_max)
        )
        self._started_at: float | None = None
        self._restarts: deque[float] = deque()

    def record_start(self, now: float) -> None:
        self._started_at = now

    def in_restart_loop(self, now: float) -> bool:
        while self._restarts and self._restarts[0] <= now - self.loop_window:
            self._restarts.popleft()
        return len(self._restarts) >= self.loop_threshold

    def record_exit(self, *, now: float, exit_code: int) -> RestartDecision:
        """Decide about a run that ended at ``now`` with ``exit_code``."""
        mode = self.policy.mode
        if mode == "no":
            return RestartDecision(restart=False, reason="restart policy is 'no'")
        if mode == "on_failure" and exit_code == 0:
            return RestartDecision(
                restart=False, reason="exited with status 0 and restart policy is 'on_failure'"
            )
        uptime = 0.0 if self._started_at is None else now - self._started_at
        if uptime >= self.policy.reset_after:
            self._delays.reset()
        delay = self._delays.next_delay()
        self._restarts.append(now)
        looping = self.in_restart_loop(now)
        reason = f"ran for {uptime:.1f}s; restarting in {delay:.1f}s"
        if looping:
            reason += (
                f" (restart loop: {len(self._restarts)} restarts in the last "
                f"{self.loop_window:.0f}s)"
            )
        return RestartDecision(restart=True, delay=delay, in_restart_loop=looping, reason=reason)
