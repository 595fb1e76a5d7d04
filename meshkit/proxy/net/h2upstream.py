"""Multiplexed HTTP/2 client connections, one per destination (and more only when full).

``H2Upstreams.open_stream`` sends a request head on a connection to
``key`` (host, port): an existing one with room for another stream under the
peer's max concurrent streams, else a new one opened with ``connect``.  Each
connection's task lives in the nursery of ``H2Upstreams.run``, which its
owner (the sidecar) starts with ``nursery.start`` and cancels when it stops; a
connection that ended (GOAWAY, error, peer closed) is forgotten and the next
request opens a fresh one.

A new connection first takes a ticket from ``open_ticket`` (the destination's
circuit breaker), held until the connection's task ends;
``ConnectionLimitReached`` when none is admitted (nothing queues).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.net.h2conn import Http2Connection, Http2Stream
from meshkit.proxy.net.taskhome import TaskHome
from meshkit.proxy.policy.breaker import ConnectionLimitReached, Ticket

UpstreamKey = tuple[str, int]


class NoUpstreamNursery(Exception):
    """``H2Upstreams.run`` is not running: nothing can own a connection's task."""


class H2Upstreams(TaskHome):
    def __init__(self) -> None:
        super().__init__()
        self._connections: dict[UpstreamKey, list[Http2Connection]] = {}
        self._opening: dict[UpstreamKey, trio.Lock] = {}
        self._drain_requested = trio.Event()
        self._stream_finished = trio.Event()

    def connection_count(self, key: UpstreamKey) -> int:
        return len(self._connections.get(key, ()))

    async def open_stream(
        self,
        key: UpstreamKey,
        head: RequestHead,
        *,
        connect: Callable[[], Awaitable[trio.abc.Stream]],
        end_stream: bool,
        open_ticket: Callable[[], Ticket | None] | None = None,
    ) -> tuple[Http2Stream, bool]:
        """A new stream carrying ``head``, and whether its connection was reused.

        ``connect``'s ``ConnectFailure`` propagates; ``StreamError`` when the
        connection ended just now (the caller may retry on a new one);
        ``ConnectionLimitReached`` when a new connection is needed and
        ``open_ticket`` admits none.
        """
        connection = self._usable(key)
        reused = connection is not None
        if connection is None:
            lock = self._opening.setdefault(key, trio.Lock())
            async with lock:
                connection = self._usable(key)
                reused = connection is not None
                if connection is None:
                    connection = await self._open(key, connect, open_ticket)
        stream = await connection.open_stream(head, end_stream=end_stream)
        return stream, reused

    def _usable(self, key: UpstreamKey) -> Http2Connection | None:
        for connection in self._connections.get(key, ()):
            if (
                connection.ended is None
                and connection.codec.can_open_stream
                and not self._drain_requested.is_set()
            ):
                return connection
        return None

    async def _open(
        self,
        key: UpstreamKey,
        connect: Callable[[], Awaitable[trio.abc.Stream]],
        open_ticket: Callable[[], Ticket | None] | None,
    ) -> Http2Connection:
        if self._nursery is None:
            raise NoUpstreamNursery(
                "the HTTP/2 upstream connections have no owner nursery (H2Upstreams.run)"
            )
        ticket = None if open_ticket is None else open_ticket()
        if open_ticket is not None and ticket is None:
            raise ConnectionLimitReached(key)
        try:
            transport = await connect()
            connection = Http2Connection(transport, client_side=True)
            await self._nursery.start(self._run, key, connection, ticket)
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        return connection

    async def _run(
        self,
        key: UpstreamKey,
        connection: Http2Connection,
        ticket: Ticket | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._connections.setdefault(key, []).append(connection)
        try:
            async with trio.open_nursery() as closer:
                closer.start_soon(self._close_when_drained, connection)
                try:
                    await connection.run(task_status=task_status)
                finally:
                    closer.cancel_scope.cancel()
        finally:
            if ticket is not None:
                ticket.release()
            connections = self._connections.get(key, [])
            if connection in connections:
                connections.remove(connection)
            if not connections:
                self._connections.pop(key, None)

    def begin_drain(self) -> None:
        """Close every connection once its streams in flight are done."""
        self._drain_requested.set()
        self.stream_finished()

    def stream_finished(self) -> None:
        """A request is done with its stream (lets a draining connection close)."""
        self._stream_finished.set()
        self._stream_finished = trio.Event()

    async def _close_when_drained(self, connection: Http2Connection) -> None:
        await self._drain_requested.wait()
        while connection.codec.open_streams:
            await self._stream_finished.wait()
        await connection.aclose()

    async def aclose(self) -> None:
        """GOAWAY on every connection; their tasks end with them."""
        for connections in list(self._connections.values()):
            for connection in list(connections):
                await connection.aclose()
