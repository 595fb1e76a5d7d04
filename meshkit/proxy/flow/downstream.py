"""The client side of a listener's HTTP/1.1 connection: reading requests, writing responses.

Thin I/O around ``Http1ServerCodec``: it owns the timeouts (header, idle, body)
and turns protocol refusals into the answer HARDENING.md asks for.  A
response's trailers reach the client only when it sent ``te: trailers`` and
the body is chunked (RFC 9112 7.1.2); otherwise they are dropped, as RFC 9110
6.5.1 allows a proxy to do.
"""

from __future__ import annotations

import contextlib
import logging

import attrs
import trio
from h2.errors import ErrorCodes

from meshkit.proxy.codec.headers import HOP_BY_HOP
from meshkit.proxy.codec.http1 import refusal_bytes
from meshkit.proxy.codec.http1_fast import new_server_codec
from meshkit.proxy.codec.messages import (
    NEED_DATA,
    Body,
    Closed,
    EndOfBody,
    Headers,
    NeedData,
    ProtocolRefusal,
    RequestHead,
    ResponseHead,
)
from meshkit.proxy.flow.exchange import DownstreamGone, DownstreamOf, accepts_trailers
from meshkit.proxy.net.streamio import receive_some, send_all

log = logging.getLogger("meshkit.proxy")

RECEIVE_SIZE = 65536
# A local reply drains at most this much of an unread request body to keep the
# connection alive; a bigger body closes the connection instead.
DRAIN_LIMIT = 64 * 1024
LAST_CHUNK = b"0\r\n\r\n"

# Fields a trailer section must not carry (RFC 9110 6.5.1): framing, routing, hop-by-hop.
FORBIDDEN_TRAILERS = HOP_BY_HOP | {b"content-length", b"content-type", b"host"}


def chunked_trailer_section(trailers: Headers) -> bytes:
    """The last chunk of a chunked body carrying ``trailers`` (RFC 9112 7.1.2)."""
    lines = b"".join(
        name + b": " + value + b"\r\n"
        for name, value in trailers
        if name.lower() not in FORBIDDEN_TRAILERS and not name.startswith(b":")
    )
    return b"0\r\n" + lines + b"\r\n"


class Http1Downstream(DownstreamOf[trio.abc.Stream]):
    """One HTTP/1.1 client connection, serving its requests one after another."""

    def _open(self) -> None:
        self.codec = new_server_codec(self.limits)
        # Whether the current request takes trailers (``te: trailers``).
        self._accepts_trailers = False

    async def _receive(self) -> None:
        try:
            data = await receive_some(self.stream, RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise DownstreamGone(str(error)) from None
        self.codec.receive_data(data)

    async def send(self, data: bytes | bytearray) -> None:
        self.sent_bytes += len(data)
        try:
            await send_all(self.stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise DownstreamGone(str(error)) from None

    async def read_head(self, *, first: bool) -> RequestHead | None:
        """The next request head, or None when the connection should close.

        Between requests the connection may idle for ``idle_timeout`` (and is
        closed at once when draining); once a head has started, or on a fresh
        connection, it must complete within ``header_timeout`` (else 408).
        A head that is whole after the first read takes no header-phase scope
        (the common case: a cancel scope costs more than the parse).
        """
        if not first and not self.codec.has_buffered_bytes and not await self._await_next():
            return None
        try:
            head = self._poll_head()
            if head is NEED_DATA:
                with trio.move_on_after(self.limits.header_timeout):
                    head = await self._receive_head()
                if head is NEED_DATA:
                    timeout = self.limits.header_timeout
                    await self.refuse(408, f"request head not received within {timeout:g}s")
                    return None
        except ProtocolRefusal as refusal:
            await self.refuse(refusal.status, refusal.reason)
            return None
        except DownstreamGone:
            return None
        if isinstance(head, RequestHead):
            self._accepts_trailers = accepts_trailers(head.headers)
            self._begin_request()
            return head
        return None

    async def _await_next(self) -> bool:
        """Wait up to ``idle_timeout`` for the next request's first bytes; False to close
        (idle too long, the client left, or draining began, which cancels idle waits)."""
        with trio.move_on_after(self.limits.idle_timeout) as scope:
            self.plane.register_idle_wait(scope)
            try:
                await self._receive()
            except DownstreamGone:
                return False
            finally:
                self.plane.unregister_idle_wait(scope)
        return not scope.cancelled_caught

    def _poll_head(self) -> RequestHead | Closed | NeedData:
        event = self.codec.next_event()
        return event if isinstance(event, RequestHead | Closed) else NEED_DATA

    async def _receive_head(self) -> RequestHead | Closed | NeedData:
        while (event := self._poll_head()) is NEED_DATA:
            await self._receive()
        return event

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

    async def _send_local_response(self, head: ResponseHead, body: bytes) -> bool:
        """One write; the connection stays only if an unread body could be drained."""
        reusable = (
            not self.codec.expects_continue
            and not self.plane.draining
            and await self.drain_small_body()
        )
        if not reusable:
            head = attrs.evolve(head, headers=[*head.headers, (b"connection", b"close")])
        codec = self.codec
        await self.send(codec.send_head(head) + codec.send_body(body) + codec.send_end())
        return reusable

    def _head_bytes(self, head: ResponseHead) -> bytes:
        self.response_started = True
        if self.plane.draining:
            head = attrs.evolve(head, headers=[*head.headers, (b"connection", b"close")])
        return self.codec.send_head(head)

    async def send_response_head(self, head: ResponseHead, *, end_stream: bool = False) -> None:
        data = self._head_bytes(head)
        await self.send(data + self.codec.send_end() if end_stream else data)

    async def send_response_body(self, data: bytes, *, end_stream: bool = False) -> None:
        chunk = self.codec.send_body(data)
        await self.send(chunk + self.codec.send_end() if end_stream else chunk)

    async def end_response(self, trailers: Headers | None = None) -> None:
        """The end of the body; trailers go out only chunked to a client that takes them."""
        end = self.codec.send_end()
        if trailers and self._accepts_trailers and end == LAST_CHUNK:
            end = chunked_trailer_section(trailers)
        await self.send(end)

    async def send_whole_response(self, head: ResponseHead, body: bytes) -> None:
        codec = self.codec
        await self.send(self._head_bytes(head) + codec.send_body(body) + codec.send_end())

    def abort_response(self, error_code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """Nothing to send: the exchange ends without keep-alive, closing the connection."""
