"""The control API's runtime faults: inject, list, clear, and let them expire.

Endpoints (served by ``meshkit.registry.server.api.ControlServer``):

* ``POST /v1/faults`` ``{"service", "abort", "delay", "percent", "path_prefix",
  "headers", "duration"}`` -> 200 ``{"id", "expires_at", "version", "synced"}``;
* ``GET /v1/faults`` -> 200 ``{"faults": [...]}`` (``StoredFault.to_dict``);
* ``DELETE /v1/faults?service=X`` -> 200 ``{"removed": [ids], "version", "synced"}``;
* ``DELETE /v1/faults/<id>`` -> the same for one fault (404 if none by that id).

Every change answers once every live sidecar applied it, or names the ones
that did not (``meshkit.registry.server.runtime.RuntimeControl``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from meshkit.api import RuntimeFault
from meshkit.proxy.config import ProxyConfig
from meshkit.registry.expiring import ExpiringStore
from meshkit.registry.faults import FaultRequestError, StoredFault, fault_request
from meshkit.registry.server.runtime import DEFAULT_SYNC_TIMEOUT, LIVE_STATES, RuntimeControl

__all__ = ["DEFAULT_SYNC_TIMEOUT", "LIVE_STATES", "FaultControl"]

FaultAnswer = tuple[int, dict[str, Any]]


class FaultControl(RuntimeControl[StoredFault, RuntimeFault]):
    """The fault endpoints of one registry; ``wall_clock`` is epoch seconds (injectable)."""

    noun = "fault"
    refused = FaultRequestError

    @property
    def store(self) -> ExpiringStore[StoredFault]:
        return self.registry.faults

    def item(self, entry: StoredFault) -> RuntimeFault:
        return entry.fault

    def held(self, config: ProxyConfig) -> Collection[RuntimeFault]:
        return config.runtime_faults

    def listing(self) -> FaultAnswer:
        now = self.wall_clock()
        return 200, {
            "faults": [stored.to_dict(now=now) for stored in self.registry.faults.active(now)]
        }

    def add(self, data: dict[str, Any]) -> StoredFault:
        request = fault_request(data, known_services=self.known_services())
        return self.registry.faults.add(
            request.service, request.rule, expires_at=self.wall_clock() + request.duration
        )
