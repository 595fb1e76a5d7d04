"""What the control plane holds for a while at a person's or a test's request:
runtime faults (``meshkit fault``) and runtime rate limits (``meshkit limit``).

Pure: no I/O, no event loop, no clock of its own.  ``ExpiringStore`` keeps each
entry under an id (``f1``, ``l2``, ...: the store's prefix and a counter) with
its wall-clock expiry; the compile step copies the unexpired ones into every
sidecar's config; the control plane drops expired ones (``expire``) so they
leave the configs too.  ``on_change`` is called after every addition or removal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Expiring(Protocol):
    """An entry: its id, the service it is about, and when it expires (epoch seconds)."""

    @property
    def id(self) -> str: ...

    @property
    def service(self) -> str: ...

    @property
    def expires_at(self) -> float: ...


EntryT = TypeVar("EntryT", bound=Expiring)


class ExpiringStore(Generic[EntryT]):
    """The entries in force, by id; ids are ``prefix`` and a counter, never reused."""

    def __init__(self, *, prefix: str, on_change: Callable[[], None] | None = None) -> None:
        self._entries: dict[str, EntryT] = {}
        self._prefix = prefix
        self._next_id = 1
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def add_entry(self, build: Callable[[str], EntryT]) -> EntryT:
        """Add ``build(new_id)``; return it."""
        entry = build(f"{self._prefix}{self._next_id}")
        self._next_id += 1
        self._entries[entry.id] = entry
        self._changed()
        return entry

    def get(self, entry_id: str) -> EntryT | None:
        return self._entries.get(entry_id)

    def remove(self, entry_id: str) -> EntryT | None:
        """Remove one entry; None if there is none by that id (any more)."""
        entry = self._entries.pop(entry_id, None)
        if entry is not None:
            self._changed()
        return entry

    def remove_where(self, condition: Callable[[EntryT], bool]) -> list[EntryT]:
        """Remove every entry for which ``condition`` holds; return them (maybe none)."""
        removed = [entry for entry in self._entries.values() if condition(entry)]
        for entry in removed:
            del self._entries[entry.id]
        if removed:
            self._changed()
        return removed

    def remove_service(self, service: str) -> list[EntryT]:
        """Remove every entry on ``service``; return them (maybe none)."""
        return self.remove_where(lambda entry: entry.service == service)

    def active(self, now: float) -> list[EntryT]:
        """The entries that have not expired at ``now``, oldest first."""
        return [entry for entry in self._entries.values() if entry.expires_at > now]

    def expire(self, now: float) -> list[EntryT]:
        """Forget the entries expired at ``now``; return them."""
        return self.remove_where(lambda entry: entry.expires_at <= now)

    def next_expiry(self) -> float | None:
        """The earliest expiry of an entry held, None when there is none."""
        return min((entry.expires_at for entry in self._entries.values()), default=None)
