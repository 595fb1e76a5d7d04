"""Delays between attempts to reach the control plane (pure: no clock, no loop)."""

from __future__ import annotations

import attrs


@attrs.define(kw_only=True)
class Backoff:
    """Exponential delays from ``base`` doubling up to ``cap``; ``reset`` after a success."""

    base: float = 0.1
    cap: float = 5.0
    _attempt: int = 0

    def next_delay(self) -> float:
        delay: float = min(self.cap, self.base * 2.0**self._attempt)
        if delay < self.cap:
            self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0
