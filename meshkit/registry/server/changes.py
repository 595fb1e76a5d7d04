"""Turns the registry's change hooks into something trio tasks can wait on.

Every change bumps a generation counter and wakes all waiters.  A task that
reads the registry, then calls ``wait_beyond(generation)`` with the generation
it read at, never misses a change that happened in between.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from meshkit.registry.state import Registry


class RegistryChanges:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.generation = 0
        self._event = trio.Event()
        registry.on_change(self._changed)

    def _changed(self, _key: str) -> None:
        self.generation += 1
        self._event.set()
        self._event = trio.Event()

    async def wait_beyond(self, generation: int) -> int:
        """Return once the generation is above ``generation``; return the new one."""
        while self.generation <= generation:
            await self._event.wait()
        return self.generation

    async def wait_until(
        self, predicate: Callable[[Registry], bool], *, timeout: float = math.inf
    ) -> bool:
        """Wait until ``predicate(registry)`` holds; False if ``timeout`` passed first."""
        with trio.move_on_after(timeout):
            while True:
                seen = self.generation
                if predicate(self.registry):
                    return True
                await self.wait_beyond(seen)
        return False
