"""Which instance of a destination gets a request: round robin or least request (P2C).

Pure: the caller passes the candidate endpoints (already narrowed to the
chosen version), the instances the outlier detector ejected, and those to avoid
(the ones a retry already tried).  Ejected instances are skipped; avoided ones
are used only when nothing else is left.  Least request keeps a count of
requests in flight per instance (``request_started`` / ``request_finished``)
and picks the less busy of two instances drawn at random, as Envoy does.
"""

from __future__ import annotations

import random as random_module
from collections.abc import Collection, Sequence

from meshkit.api import LoadBalancerKind
from meshkit.proxy.config import Endpoint


def routable_ejections(endpoints: Sequence[Endpoint], ejected: Collection[str]) -> Collection[str]:
    """The ejections to honour for a routed subset: none when they would empty it.

    Envoy's panic mode: a route pinned to a version, or a split's version,
    whose every instance is ejected keeps sending to them rather than
    answering ``503 UH`` until the ejections expire.
    """
    if not ejected:
        return ejected
    if all(endpoint.instance in ejected for endpoint in endpoints):
        return ()
    return ejected


class LoadBalancer:
    """Picks endpoints of one destination; state survives config swaps."""

    def __init__(self, *, kind: LoadBalancerKind, random: random_module.Random) -> None:
        self.kind = kind
        self._random = random
        self._next_index: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        *,
        ejected: Collection[str] = (),
        avoid: Collection[str] = (),
        key: str = "",
    ) -> Endpoint | None:
        """One endpoint, or None when every endpoint is ejected (answer ``UH``).

        ``key`` keeps a separate round-robin position per subset (a version).
        """
        pool: Sequence[Endpoint] = endpoints
        if ejected or avoid:  # (a first try with none ejected, nearly always: no copies)
            candidates = [endpoint for endpoint in endpoints if endpoint.instance not in ejected]
            preferred = [endpoint for endpoint in candidates if endpoint.instance not in avoid]
            pool = preferred or candidates
        if not pool:
            return None
        if len(pool) == 1:
            return pool[0]
        if self.kind == "least_request":
            first, second = self._random.sample(pool, 2)
            return (
                second
                if self.in_flight(second.instance) < self.in_flight(first.instance)
                else first
            )
        index = self._next_index.get(key, 0) % len(pool)
        self._next_index[key] = index + 1
        return pool[index]

    def request_started(self, instance: str) -> None:
        self._in_flight[instance] = self._in_flight.get(instance, 0) + 1

    def request_finished(self, instance: str) -> None:
        remaining = self._in_flight.get(instance, 0) - 1
        if remaining > 0:
            self._in_flight[instance] = remaining
        else:
            self._in_flight.pop(instance, None)

    def in_flight(self, instance: str) -> int:
        """Requests sent to ``instance`` and not finished yet."""
        return self._in_flight.get(instance, 0)
