"""HTTP/2 on a listener: each stream is a ``Downstream`` for the request flow.

``serve_http2`` runs one server-side ``Http2Connection`` and hands each
stream the peer opens to ``handle_request`` (the same function that serves an
HTTP/1.1 request) wrapped in an ``H2Downstream``.  Streams run concurrently,
one task each, in a nursery the connection owns; the codec refuses a stream
over ``max_concurrent_streams`` (100) with ``REFUSED_STREAM``, and so does the
listener's ``StreamAdmission`` over ``Limits.max_streams_per_listener``
(across connections).  A stream the peer resets (or whose connection ends)
cancels its task wherever it is, upstream stream included: nothing is routed
or forwarded for it afterwards (rapid reset, CVE-2023-44487).

``H2Downstream`` is the request flow's ``Downstream`` for one stream:

* the request body, acknowledged to the peer only as it is consumed, so a
  slow upstream never makes us buffer past a window;
* the response, streamed with trailers, sent whole, or reset
  (``abort_response``); a refusal after the response started resets the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from h2.errors import ErrorCodes

from meshkit.proxy.codec.http2 import Http2Limits
from meshkit.proxy.codec.messages import (
    END_OF_BODY,
    NEED_DATA,
    Body,
    EndOfBody,
    Headers,
    NeedData,
    RequestHead,
    ResponseHead,
)
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.exchange import Client, DownstreamGone, DownstreamOf
from meshkit.proxy.net.h2conn import Http2Connection, Http2Stream, StreamError
from meshkit.proxy.policy.admission import StreamAdmission
from meshkit.proxy.policy.flags import DOWNSTREAM_CLOSED, DOWNSTREAM_RESET

log = logging.getLogger("meshkit.proxy")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2Downstream(DownstreamOf[Http2Stream]):
    """One HTTP/2 request stream, seen as the client side of one exchange."""

    # ------------------------------------------------------------ the request body

    @property
    def request_trailers(self) -> Headers | None:
        """The request's trailers, once its body has been read to the end."""
        return self.stream.trailers

    def poll_body_event(self) -> Body | EndOfBody | NeedData:
        try:
            chunk = self.stream.poll_chunk()
        except StreamError as error:
            raise DownstreamGone(str(error)) from None
        if chunk is None:
            return NEED_DATA
        if not chunk:
            return END_OF_BODY
        self._count_body(chunk)
        return Body(data=chunk)

    async def _wait_for_body(self) -> None:
        try:
            await self.stream.wait_for_data()
        except StreamError as error:
            raise DownstreamGone(str(error)) from None

    async def send_continue_if_expected(self) -> None:
        """Nothing to do: an HTTP/2 client sends its body without waiting for 100."""

    # ------------------------------------------------------------ the response

    async def send_response_head(self, head: ResponseHead, *, end_stream: bool = False) -> None:
        self.response_started = True
        if end_stream:
            await self._guard(self.stream.send_head(head, end_stream=True))
            return
        # The body follows: queue the head so that it leaves with the first bytes of it.
        self._queue_head(head)

    async def send_whole_response(self, head: ResponseHead, body: bytes) -> None:
        self.response_started = True
        self._queue_head(head)
        self.sent_bytes += len(body)
        await self._guard(self.stream.send_body(body, end_stream=True))

    def _queue_head(self, head: ResponseHead) -> None:
        try:
            self.stream.queue_head(head)
        except StreamError as error:
            raise DownstreamGone(str(error)) from None

    async def send_response_body(self, data: bytes, *, end_stream: bool = False) -> None:
        self.sent_bytes += len(data)
        await self._guard(self.stream.send_body(data, end_stream=end_stream))

    async def end_response(self, trailers: Headers | None = None) -> None:
        await self._guard(self.stream.send_trailers(trailers) if trailers else self.stream.end())

    def abort_response(self, error_code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """Reset the stream: the client learns the response is incomplete."""
        self.stream.reset(error_code)

    async def _send_local_response(self, head: ResponseHead, body: bytes) -> bool:
        """Send it on this stream; the connection always stays open."""
        if body:
            await self.send_whole_response(head, body)
        else:
            await self.send_response_head(head, end_stream=True)
        return True

    async def refuse(self, status: int, reason: str, *, flag: str = "-") -> None:
        """Answer ``status`` if nothing was sent yet, else reset the stream."""
        log.info("%s: refused HTTP/2 request: %d %s", self.listener_name, status, reason)
        if self.response_started:
            self.abort_response()
            return
        with trio.move_on_after(1):
            try:
                await self.reply(status, (reason + "\n").encode(), reason=reason, flag=flag)
            except DownstreamGone:
                return

    async def _guard(self, sending: Awaitable[None]) -> None:
        try:
            await sending
        except (StreamError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise DownstreamGone(str(error)) from None


RequestHandler = Callable[[DataPlane, H2Downstream, RequestHead], Awaitable[bool]]


async def serve_http2(
    plane: DataPlane,
    *,
    transport: trio.abc.Stream,
    client: Client,
    handle_request: RequestHandler,
    header_allowance: int = 0,
) -> None:
    """Serve every stream of one HTTP/2 connection until it ends (or the sidecar drains).

    ``header_allowance``: room above ``max_header_bytes`` for the fields the
    mesh added on the way (an inbound listener, whose peer is a sidecar).
    """
    connection = Http2Connection(
        transport,
        client_side=False,
        limits=Http2Limits(max_header_list_size=client.limits.max_header_bytes + header_allowance),
    )

    async def serve_stream(stream: Http2Stream, admission: StreamAdmission) -> None:
        try:
            await serve_admitted(stream)
        finally:
            admission.release(connection)

    async def serve_admitted(stream: Http2Stream) -> None:
        assert stream.head is not None
        downstream = H2Downstream(stream=stream, plane=plane, client=client)
        started = trio.current_time()
        with trio.CancelScope() as work:
            # A reset (or the connection's end) cancels the request wherever it is:
            # nothing is routed or forwarded for it afterwards (rapid reset).
            stream.cancel_on_peer_reset(work)
            try:
                await handle_request(plane, downstream, stream.head)
            except DownstreamGone:
                return
            except Exception:
                # One stream's failure must not end its siblings or the sidecar.
                log.exception("%s: HTTP/2 stream %d failed", client.listener_name, stream.stream_id)
                stream.reset(ErrorCodes.INTERNAL_ERROR)
                return
        if work.cancelled_caught:
            # Nobody waits for the answer: the access log still says the request came.
            flag = DOWNSTREAM_RESET if stream.reset_by_peer else DOWNSTREAM_CLOSED
            plane.log_access(stream.head, status=0, started=started, flag=flag)
            return
        if not stream.peer_ended and stream.failed is None:
            # Answered before the whole request arrived: stop the rest (RFC 9113 8.1).
            stream.reset(ErrorCodes.NO_ERROR)

    async def watch_drain() -> None:
        # The drain cancels this wait as it cancels an idle HTTP/1.1 keep-alive.
        with trio.CancelScope() as wait:
            plane.register_idle_wait(wait)
            try:
                await trio.sleep_forever()
            finally:
                plane.unregister_idle_wait(wait)
        await connection.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        nursery.start_soon(watch_drain)
        admission = plane.admission(client.listener_name)
        async with trio.open_nursery() as streams:
            async for stream in connection.accept_streams():
                if stream.failed is not None:
                    continue  # reset in the read that opened it: no work at all
                limit = client.limits.max_streams_per_listener
                if not admission.try_admit(connection, limit=limit):
                    stream.reset(ErrorCodes.REFUSED_STREAM)
                    continue
                streams.start_soon(serve_stream, stream, admission)
        nursery.cancel_scope.cancel()


class ReplayedStream(trio.abc.Stream):
    """``stream`` with ``prefix`` (bytes already read from it) read again first."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def send_eof(self) -> None:
        """Half-close, when the stream underneath can (plaintext); NotImplementedError if not."""
        if not isinstance(self._stream, trio.abc.HalfCloseableStream):
            raise NotImplementedError("the stream underneath cannot half-close")
        await self._stream.send_eof()


async def read_preface(stream: trio.abc.Stream) -> bytes:
    """The client's first bytes: enough to tell the HTTP/2 preface from an HTTP/1.1 request.

    Reads until the bytes stop matching the preface or hold all of it (a
    request line differs within its first bytes, so HTTP/1.1 costs no extra
    read); ``b""`` when the client closed at once.  The caller bounds the wait.
    """
    data = b""
    while len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


def is_http2(first_bytes: bytes) -> bool:
    return first_bytes.startswith(H2_PREFACE)
