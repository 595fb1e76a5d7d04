"""A retry budget per destination (Linkerd's): retries stay a fraction of requests.

Every request deposits; every retry withdraws.  Over the last ``window``
seconds, retries may number at most ``percent`` % of the requests plus
``min_per_second`` x ``window`` (so a quiet service can still retry).  Counts
are kept in ten time buckets, so memory is bounded whatever the traffic.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from meshkit.api import BudgetSettings

_BUCKETS = 10


class RetryBudget:
    """Admission of retries to one destination, over a sliding window."""

    def __init__(self, settings: BudgetSettings, *, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._width = settings.window / _BUCKETS
        self._buckets: deque[list[int]] = deque()  # [bucket index, requests, retries]

    def _current(self) -> list[int]:
        index = math.floor(self._clock() / self._width)
        while self._buckets and self._buckets[0][0] <= index - _BUCKETS:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != index:
            self._buckets.append([index, 0, 0])
        return self._buckets[-1]

    def record_request(self) -> None:
        """A request (not a retry) was sent to the destination."""
        self._current()[1] += 1

    def allowance(self) -> float:
        """Retries the window allows in all (made or not)."""
        self._current()
        requests = sum(bucket[1] for bucket in self._buckets)
        return (
            requests * self.settings.percent / 100
            + self.settings.min_per_second * self.settings.window
        )

    def retries_in_window(self) -> int:
        self._current()
        return sum(bucket[2] for bucket in self._buckets)

    def try_withdraw(self) -> bool:
        """Take one retry from the budget; False (no retry) when it is spent."""
        bucket = self._current()
        if self.retries_in_window() + 1 > self.allowance():
            return False
        bucket[2] += 1
        return True
