"""What runtime faults and runtime rate limits share on the control API: answering
once every live sidecar applied a change, and letting entries expire.

A change (an injection, a removal) answers once every live sidecar
acknowledged a config that carries it (or no longer carries it), so a test
that changes something and then sends a request sees the change; after
``sync_timeout`` it answers anyway with ``"synced": false`` and ``"lagging"``,
the instances whose sidecars did not apply it (``[]`` when synced), and the
clients fail naming them.  ``version`` is the newest config version among
those sidecars.  ``expire_forever`` removes each entry when it expires, which
is a registry change, so the compile loop takes it out of every config.

A subclass says what it holds: ``noun`` (for messages), ``store``, how an
entry appears in a config (``item``, ``held``), and how a request body becomes
an entry (``refused``, ``add``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Hashable
from typing import Any, ClassVar, Generic, TypeVar

import attrs
import trio

from meshkit.proxy.config import ProxyConfig
from meshkit.registry.expiring import Expiring, ExpiringStore
from meshkit.registry.faults import UnknownService
from meshkit.registry.server.changes import RegistryChanges
from meshkit.registry.state import InstanceRecord, Registry

DEFAULT_SYNC_TIMEOUT = 5.0
LIVE_STATES = ("starting", "healthy", "unhealthy")

Answer = tuple[int, dict[str, Any]]
EntryT = TypeVar("EntryT", bound=Expiring)
ItemT = TypeVar("ItemT", bound=Hashable)


@attrs.define(eq=False)
class RuntimeControl(Generic[EntryT, ItemT]):
    """Endpoints over one ``ExpiringStore``; ``wall_clock`` is epoch seconds (injectable)."""

    noun: ClassVar[str] = "entry"
    refused: ClassVar[type[ValueError]] = ValueError
    """What ``add`` raises for a body that cannot be applied (the message names the field)."""

    registry: Registry
    changes: RegistryChanges
    wall_clock: Callable[[], float] = attrs.field(kw_only=True, default=time.time)
    sync_timeout: float = attrs.field(kw_only=True, default=DEFAULT_SYNC_TIMEOUT)

    @property
    def store(self) -> ExpiringStore[EntryT]:
        raise NotImplementedError

    def item(self, entry: EntryT) -> ItemT:
        """What a sidecar's config carries for ``entry``."""
        raise NotImplementedError

    def held(self, config: ProxyConfig) -> Collection[ItemT]:
        """What ``config`` carries of this kind."""
        raise NotImplementedError

    def add(self, data: dict[str, Any]) -> EntryT:
        """Store the entry the body ``data`` asks for; ``UnknownService`` or ``refused`` if none."""
        raise NotImplementedError

    async def inject(self, data: dict[str, Any]) -> Answer:
        """The answer to ``POST``: 404 for an unknown service, 400 for a bad body, else ``added``."""
        try:
            entry = self.add(data)
        except UnknownService as error:
            return 404, {"error": str(error)}
        except self.refused as error:
            return 400, {"error": f"bad {self.noun}: {error}"}
        return await self.added(entry)

    def known_services(self) -> list[str]:
        return sorted({record.service for record in self.registry.app_instances()})

    async def added(self, entry: EntryT) -> Answer:
        """The answer to an addition, once every live sidecar applied it (or the wait ran out)."""
        lagging = await self._wait_applied(present=(self.item(entry),), absent=())
        return 200, {
            "id": entry.id,
            "expires_at": entry.expires_at,
            "version": self._newest_version(),
            "synced": not lagging,
            "lagging": lagging,
        }

    async def clear_service(self, service: str) -> Answer:
        known = self.known_services()
        if service not in known:
            return 404, {"error": str(UnknownService(service, known))}
        return await self._cleared(self.store.remove_service(service))

    async def clear_one(self, entry_id: str) -> Answer:
        entry = self.store.remove(entry_id)
        if entry is None:
            ids = [held.id for held in self.store.active(self.wall_clock())]
            return 404, {
                "error": f"no {self.noun} with id {entry_id!r} (it may have expired); "
                f"{self.noun}s in force: {', '.join(ids) or 'none'}"
            }
        return await self._cleared([entry])

    async def _cleared(self, removed: list[EntryT]) -> Answer:
        lagging = await self._wait_applied(
            present=(), absent=tuple(self.item(entry) for entry in removed)
        )
        return 200, {
            "removed": [entry.id for entry in removed],
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

    def lagging(self, *, present: Collection[ItemT], absent: Collection[ItemT]) -> list[str]:
        """The live sidecars whose applied config lacks one of ``present`` or holds one of ``absent``."""
        late = []
        for record in self._live_sidecars():
            applied = self.registry.applied_config_of(record.id)
            held = () if applied is None else self.held(applied)
            if any(item not in held for item in present) or any(i in held for i in absent):
                late.append(record.id)
        return late

    def applied_everywhere(self, *, present: Collection[ItemT], absent: Collection[ItemT]) -> bool:
        """Every live sidecar applied a config with each of ``present`` and none of ``absent``."""
        return not self.lagging(present=present, absent=absent)

    async def _wait_applied(
        self, *, present: Collection[ItemT], absent: Collection[ItemT]
    ) -> list[str]:
        """Wait up to ``sync_timeout`` for every live sidecar; the ones still lagging then."""

        def applied(_registry: Registry) -> bool:
            return self.applied_everywhere(present=present, absent=absent)

        await self.changes.wait_until(applied, timeout=self.sync_timeout)
        return self.lagging(present=present, absent=absent)

    async def expire_forever(self) -> None:
        """Remove each entry when it expires (a registry change: configs are recompiled)."""
        while True:
            self.store.expire(self.wall_clock())
            seen = self.changes.generation
            next_expiry = self.store.next_expiry()
            wait = math.inf if next_expiry is None else max(0.0, next_expiry - self.wall_clock())
            with trio.move_on_after(wait):
                await self.changes.wait_beyond(seen)
