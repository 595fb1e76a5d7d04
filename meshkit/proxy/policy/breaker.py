"""Circuit breaking per destination (Envoy's): bounded connections, requests, retries.

Admission is immediate: a ``try_*`` call returns a ``Ticket`` to release when
the resource is given back, or None when the limit is reached; the caller then
answers 503 with the flag ``UO`` at once instead of queueing.  Releasing a
ticket twice releases it once.

A connection ticket is taken by the connection pools (``pool``, ``h2upstream``)
when they open a new connection to an instance of the destination, and held
for the connection's life; a request that needs a new connection when none is
admitted is answered ``503 UO``.  meshkit never queues a request waiting for a
connection, so it has no limit on pending requests (Envoy's
``max_pending_requests``): nothing is ever pending.
"""

from __future__ import annotations

from typing import Literal

from meshkit.api import BreakerLimits

Resource = Literal["connections", "requests", "retries"]


class ConnectionLimitReached(Exception):
    """A new connection was needed but the destination's breaker admitted none (``UO``)."""

    def __init__(self, key: tuple[str, int]) -> None:
        super().__init__(f"no connection to {key[0]}:{key[1]} admitted (max_connections)")
        self.key = key


class Ticket:
    """One admitted unit of a resource; ``release()`` gives it back (idempotent)."""

    __slots__ = ("_breaker", "_released", "resource")

    def __init__(self, breaker: CircuitBreaker, resource: Resource) -> None:
        self._breaker = breaker
        self.resource: Resource = resource
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._breaker._give_back(self.resource)


class CircuitBreaker:
    """The four limits of one destination and their current use."""

    def __init__(self, limits: BreakerLimits, *, service: str) -> None:
        self.service = service
        self._limits: dict[Resource, int] = {}
        self._in_use: dict[Resource, int] = {
            "connections": 0,
            "requests": 0,
            "retries": 0,
        }
        self.update_limits(limits)

    def update_limits(self, limits: BreakerLimits) -> None:
        """Apply new limits; what is in use stays counted (a lower limit refuses new work)."""
        self._limits = {
            "connections": limits.max_connections,
            "requests": limits.max_requests,
            "retries": limits.max_retries,
        }

    def _try(self, resource: Resource) -> Ticket | None:
        if self._in_use[resource] >= self._limits[resource]:
            return None
        self._in_use[resource] += 1
        return Ticket(self, resource)

    def _give_back(self, resource: Resource) -> None:
        self._in_use[resource] -= 1

    def try_open_connection(self) -> Ticket | None:
        return self._try("connections")

    def try_start_request(self) -> Ticket | None:
        return self._try("requests")

    def try_start_retry(self) -> Ticket | None:
        return self._try("retries")

    def in_use(self, resource: Resource) -> int:
        return self._in_use[resource]

    def overflow_reason(self, resource: Resource) -> str:
        """The sentence for the 503 ``UO`` reply when ``resource`` is at its limit."""
        names = {
            "connections": "max_connections",
            "requests": "max_requests",
            "retries": "max_retries",
        }
        return (
            f"circuit breaker open for {self.service!r}: {self._in_use[resource]} {resource} "
            f"in use ({names[resource]}={self._limits[resource]})"
        )
