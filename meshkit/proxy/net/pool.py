"""Keep-alive connections to endpoints, reused across requests.

A connection goes back to the pool only after a complete, reusable exchange;
anything that failed is closed, and an idle connection whose peer has closed it
is noticed before reuse.  At most ``max_idle_per_key`` idle connections
are kept per destination, and an idle connection older than ``max_idle_age``
is closed instead of reused (its peer has probably closed it already).

A new connection may need a ticket from the destination's circuit breaker
(``open_ticket``); the connection holds it until it is closed, whichever way.
When none is admitted, idle connections opened under the same ``open_ticket``
(to other instances of the service) are closed to free one, and failing that
``ConnectionLimitReached`` is raised before connecting: nothing ever queues.
"""

from __future__ import annotations

import contextlib
import select
from collections import deque
from collections.abc import Awaitable, Callable

import attrs
import trio

from meshkit.proxy.codec.http1 import Http1ClientCodec
from meshkit.proxy.codec.http1_fast import new_client_codec
from meshkit.proxy.config import Limits
from meshkit.proxy.net.tlsstream import TlsStream
from meshkit.proxy.policy.breaker import ConnectionLimitReached, Ticket

PoolKey = tuple[str, int]
TicketSource = Callable[[], Ticket | None]


@attrs.define(kw_only=True, eq=False)
class UpstreamConnection:
    """A stream to one destination and the codec speaking HTTP/1.1 on it.

    ``ticket`` is the breaker's connection ticket, given back when the connection closes.
    """

    key: PoolKey
    stream: trio.abc.Stream
    codec: Http1ClientCodec
    ticket: Ticket | None = None
    ticket_source: TicketSource | None = None
    idle_since: float = attrs.field(default=0.0, init=False)
    reused: bool = attrs.field(default=False, init=False)


class ConnectionPool:
    def __init__(self, *, max_idle_per_key: int, max_idle_age: float) -> None:
        self.max_idle_per_key = max_idle_per_key
        self.max_idle_age = max_idle_age
        self._idle: dict[PoolKey, deque[UpstreamConnection]] = {}
        self._closed = False

    def idle_count(self, key: PoolKey) -> int:
        return len(self._idle.get(key, ()))

    async def acquire(
        self,
        key: PoolKey,
        *,
        limits: Limits,
        connect: Callable[[], Awaitable[trio.abc.Stream]],
        open_ticket: TicketSource | None = None,
    ) -> UpstreamConnection:
        """An idle connection to ``key`` (most recently used first), or a new one.

        ``connect`` opens a new stream; its ``ConnectFailure`` propagates.  A
        new connection first takes a ticket from ``open_ticket`` (when given);
        ``ConnectionLimitReached`` when none is admitted.
        """
        idle = self._idle.get(key)
        now = trio.current_time()
        while idle:
            connection = idle.pop()
            idle_for = now - connection.idle_since
            if idle_for <= self.max_idle_age and not _peer_has_spoken(connection.stream, idle_for):
                connection.reused = True
                return connection
            await _close(connection)
        ticket = None if open_ticket is None else await self._take_ticket(key, open_ticket)
        try:
            stream = await connect()
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        return UpstreamConnection(
            key=key,
            stream=stream,
            codec=new_client_codec(limits),
            ticket=ticket,
            ticket_source=open_ticket,
        )

    async def _take_ticket(self, key: PoolKey, open_ticket: TicketSource) -> Ticket:
        ticket = open_ticket()
        if ticket is None:
            ticket = await self._free_idle_ticket(open_ticket)
        if ticket is None:
            raise ConnectionLimitReached(key)
        return ticket

    async def _free_idle_ticket(self, open_ticket: TicketSource) -> Ticket | None:
        """Close idle connections under the same limit (oldest first) until a ticket is free."""
        sharing = [
            (idle, connection)
            for idle in self._idle.values()
            for connection in idle
            if connection.ticket_source == open_ticket
        ]
        for idle, connection in sharing:
            if connection in idle:
                idle.remove(connection)
                await _close(connection)
                ticket = open_ticket()
                if ticket is not None:
                    return ticket
        return None

    async def release(self, connection: UpstreamConnection) -> None:
        """Return a connection after a complete exchange; closes it if it cannot be reused."""
        if self._closed or not connection.codec.finish_cycle():
            await _close(connection)
            return
        idle = self._idle.setdefault(connection.key, deque())
        if len(idle) >= self.max_idle_per_key:
            await _close(idle.popleft())
        connection.idle_since = trio.current_time()
        idle.append(connection)

    async def discard(self, connection: UpstreamConnection) -> None:
        """Close a connection that failed or was left mid-exchange."""
        await _close(connection)

    async def aclose(self) -> None:
        """Close every idle connection and refuse to keep any more."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await _close(connection)


# A connection given back this recently is reused without a system call to ask
# whether its peer closed it: peers close idle connections after seconds (their
# keep-alive timeout), and a request sent on one that died anyway is retried once
# on a fresh connection (``flow.h1forward``), as it must be since the peer can
# close right after any check.
RECHECK_AFTER_IDLE = 0.1


def _peer_has_spoken(stream: trio.abc.Stream, idle: float) -> bool:
    """True when an idle connection is readable: its peer closed it (or sent junk).

    TLS knows without a system call when it has read the peer's close_notify
    or bytes; past ``RECHECK_AFTER_IDLE`` one non-blocking ``select`` asks the
    kernel, so a connection the endpoint closed while idle is not used.
    """
    if isinstance(stream, TlsStream):
        if stream.peer_has_spoken():
            return True
        stream = stream.transport_stream
    if idle < RECHECK_AFTER_IDLE or not isinstance(stream, trio.SocketStream):
        return False
    try:
        readable, _, _ = select.select([stream.socket.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


async def _close(connection: UpstreamConnection) -> None:
    """Close ``connection`` and give its breaker ticket back (both at most once)."""
    if connection.ticket is not None:
        connection.ticket.release()
    await _close_quietly(connection.stream)


async def _close_quietly(stream: trio.abc.Stream) -> None:
    with (
        trio.CancelScope(shield=True),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
    ):
        await stream.aclose()
