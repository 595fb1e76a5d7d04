"""The HTTP/2 streams one listener serves at once, across all its connections.

Each connection's own bound (``max_concurrent_streams``) says nothing of a
peer that opens many connections.  ``StreamAdmission`` bounds a listener's
streams in flight (``Limits.max_streams_per_listener``) and keeps room for
others: up to half the bound any connection may open streams; beyond it a
connection may hold only ``limit // (holders + 1)`` of them (its share if one
more connection came), so one peer, or a few, can never take the whole
listener; a connection's first stream is admitted while the listener has room
(an HTTP/1.1 request in flight counts as one stream of its connection).  A stream that is not admitted is refused (``REFUSED_STREAM``,
which a client may retry safely).
"""

from __future__ import annotations

from collections.abc import Hashable

import attrs


@attrs.define
class StreamAdmission:
    """Streams in flight per connection of one listener (pure; the caller names connections)."""

    _held: dict[Hashable, int] = attrs.field(factory=dict, init=False)
    total: int = attrs.field(default=0, init=False)

    def try_admit(self, connection: Hashable, *, limit: int) -> bool:
        """Admit one more stream of ``connection``; False when it must be refused."""
        held = self._held.get(connection, 0)
        if self.total >= limit:
            return False
        if self.total * 2 >= limit:
            others = len(self._held) - (1 if held else 0)
            if held and held >= limit // (others + 2):
                return False
        self._held[connection] = held + 1
        self.total += 1
        return True

    def release(self, connection: Hashable) -> None:
        """One admitted stream of ``connection`` is over."""
        held = self._held.get(connection, 0)
        if held <= 0:
            return
        self.total -= 1
        if held == 1:
            del self._held[connection]
        else:
            self._held[connection] = held - 1
