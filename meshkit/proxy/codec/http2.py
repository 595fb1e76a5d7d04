"""The HTTP/2 codec: a sans-I/O wrapper around ``h2.connection.H2Connection``.

Bytes in, protocol-neutral per-stream events out (heads are the
``RequestHead`` / ``ResponseHead`` of ``meshkit.proxy.codec.messages``); calls in,
bytes out.  It never touches a socket: ``meshkit.proxy.net.h2conn`` moves the bytes.

What it adds to h2 (HARDENING.md, HTTP/2 section):

* the stream over ``max_concurrent_streams`` is refused with RST_STREAM
  ``REFUSED_STREAM`` (h2 would end the whole connection); its header block is
  still decoded so that HPACK state stays in step;
* malformed field blocks (uppercase names, missing or repeated pseudo-headers,
  connection-specific fields) reset that stream with ``PROTOCOL_ERROR``
  (``meshkit.proxy.codec.translate`` decides);
* rapid reset and a peer that never reads end the connection
  (``meshkit.proxy.codec.h2guard`` counts);
* every protocol error becomes a ``ConnectionEnded`` event, never an exception.

The clock is injected (``clock() -> seconds``) so the guards run under tests'
fake clocks.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import h2.config
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from meshkit.proxy.codec import translate
from meshkit.proxy.codec.h2events import (
    ConnectionEnded,
    DataReceived,
    Http2Event,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from meshkit.proxy.codec.h2guard import (
    MAX_OUTBOUND_CONTROL_FRAMES,
    MAX_OUTBOUND_FRAMES,
    FrameCount,
    OutboundFrameBudget,
    RapidResetDetector,
    count_frames,
)
from meshkit.proxy.codec.h2strict import StrictH2Connection
from meshkit.proxy.codec.messages import Headers, RequestHead, ResponseHead

__all__ = [
    "ConnectionEnded",
    "DataReceived",
    "Http2Codec",
    "Http2Event",
    "Http2Limits",
    "RequestReceived",
    "ResponseReceived",
    "StreamReset",
    "TrailersReceived",
    "WindowOpened",
    "error_name",
]

DEFAULT_WINDOW_SIZE = 65_535


@attrs.frozen(kw_only=True)
class Http2Limits:
    """What we advertise and enforce on one HTTP/2 connection."""

    max_concurrent_streams: int = 100
    max_header_list_size: int = 64 * 1024
    initial_window_size: int = DEFAULT_WINDOW_SIZE
    connection_window_size: int = 16 * DEFAULT_WINDOW_SIZE
    max_frame_size: int = 16_384
    max_outbound_control_frames: int = MAX_OUTBOUND_CONTROL_FRAMES
    max_outbound_frames: int = MAX_OUTBOUND_FRAMES


# ---------------------------------------------------------------- the codec


class Http2Codec:
    """One HTTP/2 connection, either role, as a pure object.

    Call ``initiate`` once, then feed ``receive_data`` and drain
    ``data_to_send`` after every call.  Senders must respect
    ``send_window(stream_id)``: ``send_data`` refuses more than it.
    """

    def __init__(
        self, *, client_side: bool, clock: Callable[[], float], limits: Http2Limits | None = None
    ) -> None:
        self.limits = limits or Http2Limits()
        self.client_side = client_side
        self._clock = clock
        config = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            # translate.py validates what comes in (as a stream error) and builds what
            # goes out from heads meshkit's strict codecs accepted: lower-case names,
            # pseudo-headers first, no connection-specific fields.  h2's own passes
            # over every field cost more than the encoding (hpackstatic.py marks the
            # secret fields h2's normalisation would).
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._h2 = StrictH2Connection(config)
        initial: dict[h2.settings.SettingCodes, int] = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.limits.max_header_list_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.limits.initial_window_size,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: self.limits.max_frame_size,
        }
        if client_side:
            initial[h2.settings.SettingCodes.ENABLE_PUSH] = 0
        self._h2.local_settings = h2.settings.Settings(client=client_side, initial_values=initial)
        self._h2.decoder.max_header_list_size = self.limits.max_header_list_size
        self._h2.max_inbound_frame_size = self.limits.max_frame_size
        self._rapid_reset = RapidResetDetector()
        self._budget = OutboundFrameBudget(
            max_control_frames=self.limits.max_outbound_control_frames,
            max_frames=self.limits.max_outbound_frames,
        )
        self._outbound: list[tuple[bytes, FrameCount]] = []
        self._queued_bytes = 0
        self.ended: ConnectionEnded | None = None
        self.finished = False
        self.flooded = False

    # ------------------------------------------------------------ bytes

    def initiate(self) -> None:
        """Queue the preface and our SETTINGS (and the larger connection window)."""
        self._h2.initiate_connection()
        extra_window = self.limits.connection_window_size - DEFAULT_WINDOW_SIZE
        if extra_window > 0:
            self._h2.increment_flow_control_window(extra_window)
        self._collect_output()

    def receive_data(self, data: bytes) -> list[Http2Event]:
        """Process bytes from the peer; ``b""`` means the peer closed its side."""
        if self.finished:
            return []
        if not data:
            self.finished = True
            return [self._end(ErrorCodes.NO_ERROR, "the peer closed the connection", by_peer=True)]
        if self._budget.exceeded():
            # Frames queued before these bytes are still unread: a peer that
            # reads its answers is never cut off by one large batch of PINGs.
            return [self._end_flood()]
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self._collect_output()  # h2 queued a GOAWAY with the right code
            self.finished = True
            return [self._end(int(error.error_code), f"HTTP/2 protocol error: {error}")]
        events = self._translate(h2_events)
        for stream_id in self._h2.refused_stream_ids:
            self._rapid_reset.stream_refused(stream_id)
        self._h2.refused_stream_ids.clear()
        if self._rapid_reset.should_close():
            self._h2.close_connection(
                ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self._h2.highest_inbound_stream_id
            )
            self.finished = True
            events.append(self._end(ErrorCodes.ENHANCE_YOUR_CALM, self._rapid_reset.describe()))
        self._collect_output()
        return events

    def _end_flood(self) -> ConnectionEnded:
        """Drop what the peer left unread and queue only GOAWAY ENHANCE_YOUR_CALM."""
        reason = self._budget.describe()
        self._outbound.clear()
        self._queued_bytes = 0
        self._budget = OutboundFrameBudget(
            max_control_frames=self.limits.max_outbound_control_frames,
            max_frames=self.limits.max_outbound_frames,
        )
        self._h2.close_connection(
            ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self._h2.highest_inbound_stream_id
        )
        self._collect_output()
        self.finished = True
        self.flooded = True
        return self._end(ErrorCodes.ENHANCE_YOUR_CALM, reason)

    def data_to_send(self) -> bytes:
        """Everything queued for the peer; the caller writes it to the transport."""
        chunks = [chunk for chunk, _ in self._outbound]
        for _, count in self._outbound:
            self._budget.written(count)
        self._outbound.clear()
        self._queued_bytes = 0
        return b"".join(chunks)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def queued_frames(self) -> int:
        return self._budget.queued_frames

    # ------------------------------------------------------------ calls

    def send_request(self, head: RequestHead, *, scheme: bytes = b"http", end_stream: bool) -> int:
        """Open a stream with ``head``; returns its id (client side)."""
        stream_id: int = self._h2.get_next_available_stream_id()
        fields = translate.request_to_h2(head, scheme=scheme)
        self._h2.send_headers(stream_id, fields, end_stream=end_stream)
        self._collect_output()
        return stream_id

    def send_response(self, stream_id: int, head: ResponseHead, *, end_stream: bool) -> None:
        self._h2.send_headers(stream_id, translate.response_to_h2(head), end_stream=end_stream)
        if end_stream:
            self._rapid_reset.stream_closed(stream_id)
        self._collect_output()

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Queue ``data`` (at most ``send_window(stream_id)`` bytes) in frames."""
        if len(data) > self.send_window(stream_id):
            raise ValueError(
                f"{len(data)} bytes exceed the peer's window of {self.send_window(stream_id)}"
            )
        frame_size = self._h2.max_outbound_frame_size
        for start in range(0, len(data), frame_size):
            last = start + frame_size >= len(data)
            self._h2.send_data(
                stream_id, data[start : start + frame_size], end_stream=end_stream and last
            )
        if not data and end_stream:
            self._h2.end_stream(stream_id)
        if end_stream:
            self._rapid_reset.stream_closed(stream_id)
        self._collect_output()

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        self._h2.send_headers(stream_id, translate.trailers_to_h2(trailers), end_stream=True)
        self._rapid_reset.stream_closed(stream_id)
        self._collect_output()

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        """RST_STREAM; a stream already closed, or on a closed connection, is left alone.

        ``REFUSED_STREAM`` (a stream we will not serve) counts as premature for
        the rapid-reset rule, as a stream over ``max_concurrent_streams`` does.
        """
        try:
            self._h2.reset_stream(stream_id, error_code)
        except h2.exceptions.ProtocolError:  # StreamClosedError, or the connection is CLOSED
            return
        if error_code == ErrorCodes.REFUSED_STREAM:
            self._rapid_reset.stream_refused(stream_id)
        else:
            self._rapid_reset.stream_closed(stream_id)
        self._collect_output()

    def acknowledge(self, stream_id: int, flow_controlled_length: int) -> None:
        """The consumer took these bytes: let the peer send as many more."""
        if self.ended is None and flow_controlled_length:
            self._h2.acknowledge_received_data(flow_controlled_length, stream_id)
            self._collect_output()

    def send_window(self, stream_id: int) -> int:
        """How many body bytes the peer lets us send on ``stream_id`` now."""
        try:
            return int(self._h2.local_flow_control_window(stream_id))
        except h2.exceptions.ProtocolError:
            return 0

    def close(self, error_code: int = ErrorCodes.NO_ERROR, reason: str = "") -> None:
        """GOAWAY naming the last stream the peer opened; streams in flight may finish."""
        if self.ended is not None:
            return
        self._h2.close_connection(error_code, last_stream_id=self._h2.highest_inbound_stream_id)
        self._collect_output()
        self._end(error_code, reason or "closed by this side")

    @property
    def open_streams(self) -> int:
        return self._h2.exact_open_streams()

    @property
    def can_open_stream(self) -> bool:
        """Whether a new request stream fits the peer's max concurrent streams (client side)."""
        allowed = int(self._h2.remote_settings.max_concurrent_streams)
        return self.ended is None and int(self._h2.open_outbound_streams) < allowed

    # ------------------------------------------------------------ internals

    def _end(self, error_code: int, reason: str, *, by_peer: bool = False) -> ConnectionEnded:
        last = (
            self._h2.highest_outbound_stream_id
            if self.client_side
            else self._h2.highest_inbound_stream_id
        )
        self.ended = ConnectionEnded(
            error_code=int(error_code), last_stream_id=last, by_peer=by_peer, reason=reason
        )
        return self.ended

    def _collect_output(self) -> None:
        chunk = self._h2.data_to_send()
        if chunk:
            count = count_frames(chunk)
            self._budget.queued(count)
            self._outbound.append((chunk, count))
            self._queued_bytes += len(chunk)

    def _translate(self, h2_events: list[h2.events.Event]) -> list[Http2Event]:
        events: list[Http2Event] = []
        now = self._clock()
        for event in h2_events:
            translated = self._translate_one(event, now)
            if translated is not None:
                events.append(translated)
        for stream_id, reason in self._h2.malformed_streams:
            events.append(self._malformed(stream_id, reason, reset=False))
        self._h2.malformed_streams.clear()
        return events

    def _translate_one(self, event: h2.events.Event, now: float) -> Http2Event | None:
        if isinstance(event, h2.events.RequestReceived):
            self._rapid_reset.stream_opened(event.stream_id, now=now)
            return self._request(event)
        if isinstance(event, h2.events.ResponseReceived):
            return self._response(event)
        if isinstance(event, h2.events.TrailersReceived):
            try:
                trailers = translate.trailers_from_h2(list(event.headers))
            except translate.MalformedMessage as error:
                return self._malformed(event.stream_id, str(error))
            return TrailersReceived(stream_id=event.stream_id, trailers=trailers)
        if isinstance(event, h2.events.DataReceived):
            return DataReceived(
                stream_id=event.stream_id,
                data=bytes(event.data),
                flow_controlled_length=event.flow_controlled_length,
                end_stream=event.stream_ended is not None,
            )
        if isinstance(event, h2.events.StreamReset):
            return self._stream_reset(event, now)
        if isinstance(event, h2.events.WindowUpdated):
            return WindowOpened(stream_id=event.stream_id)
        if isinstance(event, h2.events.RemoteSettingsChanged):
            return WindowOpened(stream_id=0)
        if isinstance(event, h2.events.ConnectionTerminated):
            return self._goaway(event)
        return None

    def _request(self, event: h2.events.RequestReceived) -> Http2Event:
        ended = event.stream_ended is not None
        try:
            head, scheme = translate.request_from_h2(list(event.headers), ended=ended)
        except translate.MalformedMessage as error:
            return self._malformed(event.stream_id, str(error))
        return RequestReceived(
            stream_id=event.stream_id, head=head, scheme=scheme, end_stream=ended
        )

    def _response(self, event: h2.events.ResponseReceived) -> Http2Event:
        try:
            response = translate.response_from_h2(list(event.headers))
        except translate.MalformedMessage as error:
            return self._malformed(event.stream_id, str(error))
        ended = event.stream_ended is not None
        return ResponseReceived(stream_id=event.stream_id, head=response, end_stream=ended)

    def _stream_reset(self, event: h2.events.StreamReset, now: float) -> StreamReset:
        if event.remote_reset:
            self._rapid_reset.stream_reset_by_peer(event.stream_id, now=now)
        else:
            self._rapid_reset.stream_closed(event.stream_id)
        return StreamReset(
            stream_id=event.stream_id,
            error_code=int(event.error_code),
            by_peer=event.remote_reset,
            reason="reset by the peer" if event.remote_reset else "reset by h2",
        )

    def _goaway(self, event: h2.events.ConnectionTerminated) -> ConnectionEnded:
        ended = self._end(
            int(event.error_code or 0),
            f"GOAWAY from the peer ({error_name(event.error_code or 0)})",
            by_peer=True,
        )
        if event.last_stream_id is not None:
            ended = self.ended = attrs.evolve(ended, last_stream_id=event.last_stream_id)
        return ended

    def _malformed(self, stream_id: int, reason: str, *, reset: bool = True) -> StreamReset:
        """RST_STREAM PROTOCOL_ERROR (already sent when not ``reset``), as an event."""
        if reset:
            self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
        else:
            self._rapid_reset.stream_closed(stream_id)
        return StreamReset(
            stream_id=stream_id,
            error_code=int(ErrorCodes.PROTOCOL_ERROR),
            by_peer=False,
            reason=f"malformed HTTP/2 message: {reason}",
        )


def error_name(error_code: int) -> str:
    """``REFUSED_STREAM`` for 7; the number itself for codes RFC 9113 does not name."""
    try:
        return ErrorCodes(error_code).name
    except ValueError:
        return str(error_code)
