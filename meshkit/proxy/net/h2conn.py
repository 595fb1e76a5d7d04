"""Run one HTTP/2 connection over a trio stream (the thin I/O layer over ``http2``).

One task reads and feeds ``Http2Codec``; one task writes what the codec
queued.  Each stream buffers what the peer sent until its consumer takes it,
and only then is the data acknowledged (WINDOW_UPDATE): a slow reader never
makes us hold more than one stream window.  Senders wait for the peer's window
and for the write queue to drain, so a slow peer never makes us hold more than
one window either.

Server side::

    async with trio.open_nursery() as nursery:
        connection = Http2Connection(transport, client_side=False)
        await nursery.start(connection.run)
        async for stream in connection.accept_streams():
            nursery.start_soon(handle, stream)   # stream.head, stream.receive_body() ...

Client side: ``await nursery.start(connection.run)``, then ``stream = await
connection.open_stream(head, end_stream=True)`` and ``await stream.receive_response()``.

``run`` returns when the connection is over; the caller's nursery owns it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import trio
from h2.errors import ErrorCodes

from meshkit.proxy.codec.http2 import (
    ConnectionEnded,
    DataReceived,
    Http2Codec,
    Http2Event,
    Http2Limits,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
    WindowOpened,
    error_name,
)
from meshkit.proxy.codec.messages import Headers, RequestHead, ResponseHead
from meshkit.proxy.net.streamio import linger

RECEIVE_SIZE = 64 * 1024
SEND_CHUNK = 64 * 1024
FLUSH_GRACE_SECONDS = 1.0
QUEUE_HIGH_WATER = 64 * 1024


class StreamError(Exception):
    """The stream was reset or its connection ended; ``error_code`` is the HTTP/2 code."""

    def __init__(self, stream_id: int, error_code: int, reason: str) -> None:
        super().__init__(f"HTTP/2 stream {stream_id}: {error_name(error_code)}: {reason}")
        self.stream_id = stream_id
        self.error_code = error_code
        self.reason = reason


class Http2Stream:
    """One request/response exchange.  Server streams have ``head``; client streams
    get theirs from ``receive_response``."""

    def __init__(self, connection: Http2Connection, stream_id: int, head: RequestHead | None):
        self.stream_id = stream_id
        self.head = head
        self.scheme = b"http"
        self.trailers: Headers | None = None
        self.peak_buffered_bytes = 0
        self.reset_by_peer = False  # RST_STREAM came (not a reset here, nor the connection's end)
        self._connection = connection
        self._response: ResponseHead | None = None
        self._buffer = bytearray()
        self._unacknowledged = 0
        self._peer_ended = False
        self._local_ended = False
        self._error: StreamError | None = None
        self._changed = trio.Event()
        self._work: trio.CancelScope | None = None

    # ------------------------------------------------------------ receiving

    async def receive_response(self) -> ResponseHead:
        """The response head (client streams)."""
        while self._response is None:
            self._raise_if_failed()
            await self._changed.wait()
        return self._response

    async def receive_chunk(self) -> bytes:
        """The body bytes received so far (acknowledged now), or ``b""`` at the end."""
        while True:
            if self._buffer:
                chunk = bytes(self._buffer)
                self._buffer.clear()
                self._connection._acknowledge(self.stream_id, self._unacknowledged)
                self._unacknowledged = 0
                return chunk
            if self._peer_ended:
                return b""
            self._raise_if_failed()
            await self._changed.wait()

    def poll_chunk(self) -> bytes | None:
        """Like ``receive_chunk`` without waiting: None when nothing new has arrived yet."""
        if self._buffer or self._peer_ended:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            if chunk:
                self._connection._acknowledge(self.stream_id, self._unacknowledged)
                self._unacknowledged = 0
            return chunk
        self._raise_if_failed()
        return None

    async def wait_for_data(self) -> None:
        """Wait until body bytes, the end of the body or a failure arrive."""
        while not (self._buffer or self._peer_ended):
            self._raise_if_failed()
            await self._changed.wait()

    @property
    def peer_ended(self) -> bool:
        """The peer ended its side (END_STREAM or trailers); buffered bytes may remain."""
        return self._peer_ended

    @property
    def buffered_bytes(self) -> int:
        """Body bytes received and not yet taken."""
        return len(self._buffer)

    @property
    def failed(self) -> StreamError | None:
        return self._error

    @property
    def unfinished(self) -> bool:
        """Neither failed nor ended both ways: frames may still come and go."""
        return self._error is None and not (self._local_ended and self._peer_ended)

    async def receive_body(self) -> AsyncIterator[bytes]:
        """The body as chunks; after the loop ``trailers`` holds any trailers."""
        while chunk := await self.receive_chunk():
            yield chunk

    # ------------------------------------------------------------ sending

    async def send_head(self, head: ResponseHead, *, end_stream: bool = False) -> None:
        """Send the response head (server streams); queued for the writer as ``send_body``."""
        self.queue_head(head, end_stream=end_stream)
        await self._connection._flush()

    def queue_head(self, head: ResponseHead, *, end_stream: bool = False) -> None:
        """Queue the response head; it leaves with the body bytes queued after it."""
        self._raise_if_failed()
        self._connection._codec.send_response(self.stream_id, head, end_stream=end_stream)
        if end_stream:
            self._ended_locally()
        self._connection._signal_output()

    async def send_body(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` as the peer's window allows (returns once queued: ``_flush``);
        ``end_stream`` puts END_STREAM on the last frame (as ``end()`` would)."""
        while data:
            self._raise_if_failed()
            window = self._connection._codec.send_window(self.stream_id)
            if window <= 0:
                await self._connection._wait_for_window()
                continue
            size = min(window, len(data), SEND_CHUNK)
            last = size == len(data)
            codec = self._connection._codec
            codec.send_data(self.stream_id, data[:size], end_stream=end_stream and last)
            if end_stream and last:
                self._ended_locally()
            data = data[size:]
            await self._connection._flush()
            if end_stream and last:
                return
        if end_stream:
            await self.end()

    async def send_trailers(self, trailers: Headers) -> None:
        """Send trailers; they end our side of the stream."""
        self._raise_if_failed()
        self._connection._codec.send_trailers(self.stream_id, trailers)
        self._ended_locally()
        await self._connection._flush()

    async def end(self) -> None:
        """End our side of the stream (END_STREAM on an empty DATA frame)."""
        self._raise_if_failed()
        self._connection._codec.end_stream(self.stream_id)
        self._ended_locally()
        await self._connection._flush()

    def reset(self, error_code: int = ErrorCodes.CANCEL) -> None:
        """RST_STREAM; later calls on this stream raise ``StreamError``."""
        if self._error is None:
            self._connection._codec.reset_stream(self.stream_id, error_code)
            self._connection._signal_output()
            self._fail(StreamError(self.stream_id, error_code, "reset by this side"))
            self._connection._streams.pop(self.stream_id, None)

    def cancel_on_peer_reset(self, work: trio.CancelScope) -> None:
        """Cancel ``work`` (the task serving this stream) when the peer resets the stream
        or the connection ends: nothing is done for a request nobody waits for."""
        self._work = work
        if self._error is not None:
            work.cancel()

    # ------------------------------------------------------------ driven by the connection

    def _peer_gone(self, error: StreamError) -> None:
        self._fail(error)
        if self._work is not None:
            self._work.cancel()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _ended_locally(self) -> None:
        self._local_ended = True
        self._connection._forget_if_closed(self)

    def _fail(self, error: StreamError) -> None:
        if self._error is None:
            self._error = error
        self._notify()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


class Http2Connection:
    """An HTTP/2 connection in either role over ``transport`` (plaintext h2c or TLS)."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        *,
        client_side: bool,
        limits: Http2Limits | None = None,
    ) -> None:
        self._transport = transport
        self._codec = Http2Codec(client_side=client_side, clock=trio.current_time, limits=limits)
        self._streams: dict[int, Http2Stream] = {}
        self._accepted_send, self._accepted_receive = trio.open_memory_channel[Http2Stream](
            math.inf  # bounded by max_concurrent_streams: the codec refuses the rest
        )
        self._output_ready = trio.Event()
        self._output_drained = trio.Event()
        self._window_opened = trio.Event()
        self._cancel_scope = trio.CancelScope()
        self.peak_queued_bytes = 0
        self.ended: ConnectionEnded | None = None

    # ------------------------------------------------------------ public

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the connection until it ends; then close the transport (lingering, if plaintext)."""
        self._codec.initiate()
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    task_status.started()
                    await self._read_loop()
                    with trio.move_on_after(FLUSH_GRACE_SECONDS):
                        await self._flush(everything=True)
                    nursery.cancel_scope.cancel()
                if getattr(self._codec.ended, "error_code", 0) != ErrorCodes.ENHANCE_YOUR_CALM:
                    await linger(self._transport)  # an abusive peer gets no more of our time
        finally:
            self._finish()
            await trio.aclose_forcefully(self._transport)

    def accept_streams(self) -> trio.MemoryReceiveChannel[Http2Stream]:
        """Streams the peer opens (server side); the iteration ends with the connection."""
        return self._accepted_receive

    async def open_stream(
        self, head: RequestHead, *, scheme: bytes = b"http", end_stream: bool = False
    ) -> Http2Stream:
        """Send a request head on a new stream (client side)."""
        if self._codec.ended is not None:
            raise StreamError(0, self._codec.ended.error_code, self._codec.ended.reason)
        await trio.lowlevel.checkpoint_if_cancelled()
        stream_id = self._codec.send_request(head, scheme=scheme, end_stream=end_stream)
        stream = Http2Stream(self, stream_id, head)
        stream.scheme = scheme
        stream._local_ended = end_stream
        self._streams[stream_id] = stream
        try:
            await self._flush()
        except BaseException:
            stream.reset()  # cancelled: the peer must not work on it
            raise
        return stream

    async def aclose(self, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """GOAWAY (naming the last stream the peer opened), flush it, then stop."""
        self._codec.close(error_code)
        with trio.move_on_after(FLUSH_GRACE_SECONDS):
            await self._flush(everything=True)
        self._cancel_scope.cancel()

    @property
    def codec(self) -> Http2Codec:
        return self._codec

    @property
    def tracked_streams(self) -> int:
        """Streams frames may still arrive for (closed ones are forgotten at once)."""
        return len(self._streams)

    # ------------------------------------------------------------ tasks

    async def _read_loop(self) -> None:
        while not self._codec.finished:
            try:
                data = await self._transport.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            events = self._codec.receive_data(bytes(data))
            self._signal_output()
            for event in events:
                self._dispatch(event)

    async def _write_loop(self) -> None:
        while True:
            data = self._codec.data_to_send()
            if data:
                try:
                    await self._transport.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._cancel_scope.cancel()
                    return
                continue
            self._output_drained.set()
            self._output_drained = trio.Event()
            await self._output_ready.wait()
            self._output_ready = trio.Event()
            # Let the tasks woken with us queue their frames too: one write for all.
            await trio.lowlevel.cancel_shielded_checkpoint()

    # ------------------------------------------------------------ helpers for streams

    def _signal_output(self) -> None:
        self.peak_queued_bytes = max(self.peak_queued_bytes, self._codec.queued_bytes)
        self._output_ready.set()

    async def _flush(self, *, everything: bool = False) -> None:
        """Hand what is queued to the writer; wait only while over QUEUE_HIGH_WATER (a small
        response's task ends at once, its frames leave with others' in one write), or, with
        ``everything``, until all of it is written."""
        self._signal_output()
        bound = 0 if everything else QUEUE_HIGH_WATER
        while self._codec.queued_bytes > bound:
            await self._output_drained.wait()

    async def _wait_for_window(self) -> None:
        await self._window_opened.wait()

    def _forget_if_closed(self, stream: Http2Stream) -> None:
        # Both sides sent END_STREAM: no frame of the peer concerns the stream any
        # more.  Its consumer keeps the object (and what is buffered in it); the
        # connection must not, or a long-lived connection grows with every request.
        if stream._local_ended and stream._peer_ended:
            self._streams.pop(stream.stream_id, None)

    def _acknowledge(self, stream_id: int, flow_controlled_length: int) -> None:
        self._codec.acknowledge(stream_id, flow_controlled_length)
        self._signal_output()

    def _dispatch(self, event: Http2Event) -> None:
        if isinstance(event, RequestReceived):
            stream = Http2Stream(self, event.stream_id, event.head)
            stream.scheme = event.scheme
            stream._peer_ended = event.end_stream
            self._streams[event.stream_id] = stream
            self._accepted_send.send_nowait(stream)
        elif isinstance(event, ResponseReceived):
            if (stream_or_none := self._streams.get(event.stream_id)) is not None:
                stream_or_none._response = event.head
                stream_or_none._peer_ended = event.end_stream
                stream_or_none._notify()
                self._forget_if_closed(stream_or_none)
        elif isinstance(event, DataReceived):
            self._receive_body_data(event)
        elif isinstance(event, TrailersReceived):
            if (stream_or_none := self._streams.get(event.stream_id)) is not None:
                stream_or_none.trailers = event.trailers
                stream_or_none._peer_ended = True
                stream_or_none._notify()
                self._forget_if_closed(stream_or_none)
        elif isinstance(event, StreamReset):
            if (stream_or_none := self._streams.pop(event.stream_id, None)) is not None:
                error = StreamError(event.stream_id, event.error_code, event.reason)
                stream_or_none.reset_by_peer = True
                stream_or_none._peer_gone(error)
            self._wake_senders()
        elif isinstance(event, WindowOpened):
            self._wake_senders()
        else:
            self._connection_ended(event)

    def _receive_body_data(self, event: DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            self._codec.acknowledge(event.stream_id, event.flow_controlled_length)
            return
        stream._buffer.extend(event.data)
        stream._unacknowledged += event.flow_controlled_length
        if not event.data:
            self._codec.acknowledge(event.stream_id, stream._unacknowledged)
            stream._unacknowledged = 0
        stream.peak_buffered_bytes = max(stream.peak_buffered_bytes, len(stream._buffer))
        stream._peer_ended = stream._peer_ended or event.end_stream
        stream._notify()
        self._forget_if_closed(stream)

    def _connection_ended(self, event: ConnectionEnded) -> None:
        self.ended = event
        for stream_id, stream in list(self._streams.items()):
            unprocessed = stream_id > event.last_stream_id and self._codec.client_side
            if unprocessed or self._codec.finished:
                code = ErrorCodes.REFUSED_STREAM if unprocessed else event.error_code
                stream._peer_gone(StreamError(stream_id, code, event.reason))
                del self._streams[stream_id]
        self._wake_senders()

    def _wake_senders(self) -> None:
        self._window_opened.set()
        self._window_opened = trio.Event()

    def _finish(self) -> None:
        reason = self.ended.reason if self.ended is not None else "the connection closed"
        for stream_id, stream in self._streams.items():
            stream._peer_gone(StreamError(stream_id, ErrorCodes.CANCEL, reason))
        self._streams.clear()
        self._accepted_send.close()
        self._wake_senders()
        self._output_drained.set()
