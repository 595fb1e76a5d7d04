"""The control API's runtime rate limits: set, list, clear, and let them expire.

Endpoints (served by ``meshkit.registry.server.api.ControlServer``), shaped
as the faults' (``meshkit.registry.server.faults``):

* ``POST /v1/limits`` ``{"service", "rate", "burst", "route", "per", "duration"}``
  -> 200 ``{"id", "expires_at", "version", "synced", "lagging"}``;
* ``GET /v1/limits`` -> 200 ``{"limits": [...]}`` (``StoredLimit.to_dict``) and
  ``"in_force"``: every limit the sidecars apply, the Meshfile's included;
* ``DELETE /v1/limits?service=X`` -> 200 ``{"removed": [ids], "version", "synced"}``,
  which restores the Meshfile's limits on X;
* ``DELETE /v1/limits/<id>`` -> the same for one limit.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from meshkit.api import RateLimit
from meshkit.proxy.config import ProxyConfig
from meshkit.registry.expiring import ExpiringStore
from meshkit.registry.limits import LimitRequestError, StoredLimit, limit_dict, limit_request
from meshkit.registry.server.runtime import Answer, RuntimeControl


class LimitControl(RuntimeControl[StoredLimit, RateLimit]):
    """The rate limit endpoints of one registry; ``wall_clock`` is epoch seconds (injectable)."""

    noun = "limit"
    refused = LimitRequestError

    @property
    def store(self) -> ExpiringStore[StoredLimit]:
        return self.registry.limits

    def item(self, entry: StoredLimit) -> RateLimit:
        return entry.limit

    def held(self, config: ProxyConfig) -> Collection[RateLimit]:
        return config.rate_limits

    def listing(self) -> Answer:
        """The runtime limits, and every limit a sidecar applies (``in_force``)."""
        now = self.wall_clock()
        runtime = [stored.to_dict(now=now) for stored in self.store.active(now)]
        by_name = {entry["id"]: entry for entry in runtime}
        in_force = []
        for limit in self._applied_limits():
            entry = limit_dict(limit)
            runtime_id = limit.declared_at.removeprefix("meshkit limit ")
            in_force.append(by_name.get(runtime_id, entry) | {"declared_at": limit.declared_at})
        return 200, {"limits": runtime, "in_force": in_force}

    def _applied_limits(self) -> tuple[RateLimit, ...]:
        for record in self._live_sidecars():
            config = self.registry.config_of(record.id)
            if config is not None:
                return config.rate_limits
        return ()

    def add(self, data: dict[str, Any]) -> StoredLimit:
        limit, duration = limit_request(data, known_services=self.known_services())
        return self.registry.limits.add(limit, expires_at=self.wall_clock() + duration)
