"""The control API's runtime faults: inject, list, clear, and let them expire.

Endpoints (served by ``meshkit.registry.server.api.ControlServer``):

* ``POST /v1/faults`` ``{"service", "abort", "delay", "percent", "path_prefix",
  "headers", "duration"}`` -> 200 ``{"id", "expires_at", "version", "synced"}``;
* ``GET /v1/faults`` -> 200 ``{"faults": [...]}`` (``StoredFault.to_dict``);
* ``DELETE /v1/faults?service=X`` -> 200 ``{"removed": [ids], "version", "synced"}``;
* ``DELETE /v1/faults/<id>`` -> the same for one fault (404 if none by that id).

An injection or a removal answers once every live sidecar acknowledged a
config that carries it (or no longer carries it), so a test that injects and
then sends a request sees the fault; after ``sync_timeout`` it answers anyway
with ``"synced": false`` and ``"lagging"``, the instances whose sidecars did not
apply it (``[]`` when synced), and the clients fail naming them.  ``version`` is the newest config version among
those sidecars.  ``expire_forever`` removes each fault when it expires, which
is a registry change, so the compile loop takes it out of every config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from typing import Any

import trio

from meshkit.api import RuntimeFault
from meshkit.registry.faults import (
    FaultRequestError,
    StoredFault,
    UnknownService,
    fault_request,
)
from meshkit.registry.server.changes import RegistryChanges
from meshkit.registry.state import InstanceRecord, Registry

DEFAULT_SYNC_TIMEOUT = 5.0
LIVE_STATES = ("starting", "healthy", "unhealthy")

FaultAnswer = tuple[int, dict[str, Any]]


class FaultControl:
    """The fault endpoints of one registry; ``wall_clock`` is epoch seconds (injectable)."""

    def __init__(
        self,
        registry: Registry,
        changes: RegistryChanges,
        *,
        wall_clock: Callable[[], float] = time.time,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
    ) -> None:
        self.registry = registry
        self.changes = changes
        self.wall_clock = wall_clock
        self.sync_timeout = sync_timeout

    def known_services(self) -> list[str]:
        return sorted({record.service for record in self.registry.app_instances()})

    def listing(self) -> FaultAnswer:
        now = self.wall_clock()
        return 200, {
            "faults": [stored.to_dict(now=now) for stored in self.registry.faults.active(now)]
        }

    async def inject(self, data: dict[str, Any]) -> FaultAnswer:
        try:
            request = fault_request(data, known_services=self.known_services())
        except UnknownService as error:
            return 404, {"error": str(error)}
        except FaultRequestError as error:
            return 400, {"error": f"bad fault: {error}"}
        stored = self.registry.faults.add(
            request.service, request.rule, expires_at=self.wall_clock() + request.duration
        )
        lagging = await self._wait_applied(present=(stored.fault,), absent=())
        return 200, {
            "id": stored.id,
            "expires_at": stored.expires_at,
            "version": self._newest_version(),
            "synced": not lagging,
            "lagging": lagging,
        }

    async def clear_service(self, service: str) -> FaultAnswer:
        known = self.known_services()
        if service not in known:
            return 404, {"error": str(UnknownService(service, known))}
        return await self._cleared(self.registry.faults.remove_service(service))

    async def clear_one(self, fault_id: str) -> FaultAnswer:
        stored = self.registry.faults.remove(fault_id)
        if stored is None:
            ids = [held.id for held in self.registry.faults.active(self.wall_clock())]
            return 404, {
                "error": f"no fault with id {fault_id!r} (it may have expired); "
                f"faults in force: {', '.join(ids) or 'none'}"
            }
        return await self._cleared([stored])

    async def _cleared(self, removed: list[StoredFault]) -> FaultAnswer:
        lagging = await self._wait_applied(
            present=(), absent=tuple(stored.fault for stored in removed)
        )
        return 200, {
            "removed": [stored.id for stored in removed],
            "version": self._newest_version(),
            "synced": not lagging,
            "lagging": lagging,
        }

    def _live_sidecars(self) -> list[InstanceRecord]:
        return [
            record
            for record in self.registry.instances()
            if record.state in LIVE_STATES
            and record.sidecar_ready
            and not record.retiring
            and self.registry.config_of(record.id) is not None
        ]

    def _newest_version(self) -> int:
        return max(
            (self.registry.config_version(record.id) for record in self._live_sidecars()),
            default=0,
        )

    def lagging(
        self, *, present: Collection[RuntimeFault], absent: Collection[RuntimeFault]
    ) -> list[str]:
        """The live sidecars whose applied config lacks one of ``present`` or holds one of ``absent``."""
        late = []
        for record in self._live_sidecars():
            applied = self.registry.applied_config_of(record.id)
            held = () if applied is None else applied.runtime_faults
            if any(fault not in held for fault in present) or any(f in held for f in absent):
                late.append(record.id)
        return late

    def applied_everywhere(
        self, *, present: Collection[RuntimeFault], absent: Collection[RuntimeFault]
    ) -> bool:
        """Every live sidecar applied a config with each of ``present`` and none of ``absent``."""
        return not self.lagging(present=present, absent=absent)

    async def _wait_applied(
        self, *, present: Collection[RuntimeFault], absent: Collection[RuntimeFault]
    ) -> list[str]:
        """Wait up to ``sync_timeout`` for every live sidecar; the ones still lagging then."""

        def applied(_registry: Registry) -> bool:
            return self.applied_everywhere(present=present, absent=absent)

        await self.changes.wait_until(applied, timeout=self.sync_timeout)
        return self.lagging(present=present, absent=absent)

    async def expire_forever(self) -> None:
        """Remove each fault when it expires (a registry change: configs are recompiled)."""
        while True:
            self.registry.faults.expire(self.wall_clock())
            seen = self.changes.generation
            next_expiry = self.registry.faults.next_expiry()
            wait = math.inf if next_expiry is None else max(0.0, next_expiry - self.wall_clock())
            with trio.move_on_after(wait):
                await self.changes.wait_beyond(seen)
