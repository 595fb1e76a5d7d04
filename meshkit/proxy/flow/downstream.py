"""The client side of a listener's connection: reading requests, writing responses.

Thin I/O around ``Http1ServerCodec``: it owns the timeouts (header, idle, body)
and turns protocol refusals into the answer HARDENING.md asks for.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from meshkit.proxy.codec.http1 import refusal_bytes
from meshkit.proxy.codec.http1_fast import new_server_codec
from meshkit.proxy.codec.messages import (
    Body,
    Closed,
    EndOfBody,
    Headers,
    NeedData,
    ProtocolRefusal,
    RequestHead,
    ResponseHead,
)
from meshkit.proxy.config import Limits
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.net.streamio import receive_some, send_all
from meshkit.proxy.policy.router import FLAG_HEADER, REASON_HEADER

log = logging.getLogger("meshkit.proxy")

RECEIVE_SIZE = 65536
# A local reply drains at most this much of an unread request body to keep the
# connection alive; a bigger body closes the connection instead.
DRAIN_LIMIT = 64 * 1024


class DownstreamGone(Exception):
    """The client closed, broke or stalled the connection; nothing more can be sent."""


class RequestBodyReader:
    """The request-body half of a downstream, shared by HTTP/1.1 and HTTP/2.

    A subclass says how to take an already received piece
    (``poll_body_event``) and how to wait for more (``_wait_for_body``); this
    class counts the body against ``Limits.max_body_bytes``, bounds each wait
    by ``idle_timeout`` and loops until a piece or the end arrives.
    """

    limits: Limits
    body_bytes: int = 0

    def poll_body_event(self) -> Body | EndOfBody | NeedData:
        raise NotImplementedError

    async def _wait_for_body(self) -> None:
        raise NotImplementedError

    def _count_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        limit = self.limits.max_body_bytes
        if limit is not None and self.body_bytes > limit:
            raise ProtocolRefusal(413, f"request body over {limit} bytes")

    async def receive_body_bytes(self) -> None:
        """Wait for more of the request body (at most ``idle_timeout``)."""
        with trio.move_on_after(self.limits.idle_timeout) as scope:
            await self._wait_for_body()
        if scope.cancelled_caught:
            raise DownstreamGone("request body stalled")

    async def next_body_event(self) -> Body | EndOfBody:
        """The next piece of the request body, waiting for it if needed."""
        while True:
            event = self.poll_body_event()
            if not isinstance(event, NeedData):
                return event
            await self.receive_body_bytes()


class Downstream(RequestBodyReader):
    def __init__(
        self,
        *,
        stream: trio.abc.Stream,
        plane: DataPlane,
        limits: Limits,
        listener_name: str,
        peer_address: str | None,
        identity: str | None,
    ) -> None:
        self.stream = stream
        self.plane = plane
        self.codec = new_server_codec(limits)
        self.limits = limits
        self.listener_name = listener_name
        self.peer_address = peer_address
        self.identity = identity
        self.body_bytes = 0

    async def _receive(self) -> None:
        try:
            data = await receive_some(self.stream, RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise DownstreamGone(str(error)) from None
        self.codec.receive_data(data)

    async def send(self, data: bytes | bytearray) -> None:
        try:
            await send_all(self.stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise DownstreamGone(str(error)) from None

    async def read_head(self, *, first: bool) -> RequestHead | None:
        """The next request head, or None when the connection should close.

        Between requests the connection may idle for ``idle_timeout`` (and is
        closed at once when draining); once a head has started, or on a fresh
        connection, it must complete within ``header_timeout`` (else 408).
        """
        if not first and not self.codec.has_buffered_bytes:
            with trio.CancelScope() as idle_scope:
                idle_scope.deadline = trio.current_time() + self.limits.idle_timeout
                self.plane.register_idle_wait(idle_scope)
                try:
                    await self._receive()
                except DownstreamGone:
                    return None
                finally:
                    self.plane.unregister_idle_wait(idle_scope)
            if idle_scope.cancelled_caught:
                return None
        with trio.move_on_after(self.limits.header_timeout):
            try:
                while True:
                    event = self.codec.next_event()
                    if isinstance(event, RequestHead):
                        return event
                    if isinstance(event, Closed):
                        return None
                    await self._receive()
            except ProtocolRefusal as refusal:
                await self.refuse(refusal.status, refusal.reason)
                return None
            except DownstreamGone:
                return None
        await self.refuse(408, f"request head not received within {self.limits.header_timeout:g}s")
        return None

    async def refuse(self, status: int, reason: str, *, flag: str = "-") -> None:
        """Answer a request the codec cannot go on with, then let the caller close."""
        log.info("%s: refused request: %d %s", self.listener_name, status, reason)
        with trio.move_on_after(1):
            with contextlib.suppress(DownstreamGone):
                await self.send(refusal_bytes(status, reason, flag="" if flag == "-" else flag))

    def poll_body_event(self) -> Body | EndOfBody | NeedData:
        """The next piece of the request body if already received (no I/O).

        Raises ``DownstreamGone`` (closed mid-body) or ``ProtocolRefusal`` (413).
        """
        event = self.codec.next_event()
        if isinstance(event, Body):
            self._count_body(event.data)
            return event
        if isinstance(event, EndOfBody | NeedData):
            return event
        raise DownstreamGone("connection closed in the middle of the request body")

    async def _wait_for_body(self) -> None:
        await self._receive()

    async def send_continue_if_expected(self) -> None:
        if self.codec.expects_continue:
            await self.send(self.codec.send_informational(100))

    async def drain_small_body(self) -> bool:
        """Read and drop an unread request body of at most ``DRAIN_LIMIT`` bytes."""
        drained = 0
        try:
            while not self.codec.request_complete:
                event = await self.next_body_event()
                if isinstance(event, EndOfBody):
                    return True
                drained += len(event.data)
                if drained > DRAIN_LIMIT:
                    return False
        except (DownstreamGone, ProtocolRefusal):
            return False
        return True

    async def reply(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = b"text/plain; charset=utf-8",
        reason: str | None = None,
        flag: str = "-",
    ) -> bool:
        """Send a complete local response; True if the connection may be reused."""
        reusable = (
            not self.codec.expects_continue
            and not self.plane.draining
            and await self.drain_small_body()
        )
        headers: Headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
        ]
        if reason is not None:
            headers.append((REASON_HEADER, reason.encode("ascii", "replace")))
        if flag != "-":
            headers.append((FLAG_HEADER, flag.encode()))
        if not reusable:
            headers.append((b"connection", b"close"))
        codec = self.codec
        await self.send(
            codec.send_head(ResponseHead(status=status, headers=headers))
            + codec.send_body(body)
            + codec.send_end()
        )
        return reusable
