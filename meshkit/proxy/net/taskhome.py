"""A nursery that outlives each request: the home of tasks a request only starts.

A mirrored copy or a multiplexed upstream connection must not be cancelled
when the request that started it ends, so its task lives in the nursery of
``TaskHome.run``, which the sidecar runs (and cancels) for its whole life.
"""

from __future__ import annotations

import trio


class TaskHome:
    """Owns, in the nursery of ``run``, the tasks started while it runs."""

    def __init__(self) -> None:
        # The nursery of ``run`` while it runs; None before and after.
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the tasks until cancelled (the sidecar runs this for its life)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
