"""h2's connection with stream errors where RFC 9113 asks for them (sans-I/O).

h2 (``h2.connection.H2Connection``) ends the whole connection for three
things that concern one stream only, or names the wrong error code:

* the stream over ``max_concurrent_streams``: RFC 9113 5.1.2 allows
  ``REFUSED_STREAM`` for it, and the peer may retry that request on another
  connection.  The header block is decoded anyway (HPACK state is
  connection-wide), and the stream is recorded as closed by our reset so
  that its late frames get stream errors, as h2 does for its own resets;
* a ``content-length`` that is not a number, or that the DATA frames
  disagree with (RFC 9113 8.1.1): a stream error ``PROTOCOL_ERROR``, listed
  in ``malformed_streams`` for the codec to report, never a GOAWAY;
* a header block HPACK cannot decode: a connection error, as h2 says, but
  ``COMPRESSION_ERROR`` (RFC 9113 4.3), not ``PROTOCOL_ERROR``.

Two costs of h2 go too: it logs ``repr(frame)`` of every frame received,
built even though nothing logs it (7 us a HEADERS frame, 17 us a 1 KiB DATA
frame: a hex dump), so received frames get a class whose repr is short; and it
counts open streams by walking all of them on every stream opened.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.exceptions
from h2.errors import ErrorCodes
from h2.frame_buffer import FrameBuffer
from h2.stream import StreamClosedBy
from hpack import HPACKError, OversizedHeaderListError
from hyperframe.frame import (
    DataFrame,
    Frame,
    HeadersFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

from meshkit.proxy.codec.hpackstatic import FastDecoder, StaticTableEncoder

_EXACT_COUNT_FROM = 128
_CONTENT_LENGTH_ERRORS = ("Invalid content-length", "Conflicting content-length")


class CompressionError(h2.exceptions.ProtocolError):
    """A header block HPACK cannot decode: the connection ends with COMPRESSION_ERROR."""

    error_code = ErrorCodes.COMPRESSION_ERROR


def _short_repr(frame: Frame) -> str:
    return f"{type(frame).__name__}(stream_id={frame.stream_id})"


_QUIET: dict[type[Frame], type[Frame]] = {}


class _QuietFrameBuffer(FrameBuffer):
    """h2's frame buffer whose frames are of ``_QUIET`` subclasses (a short repr)."""

    def __next__(self) -> Frame:
        frame = super().__next__()
        quiet = _QUIET.get(type(frame))
        if quiet is not None:
            frame.__class__ = quiet
        return frame


class StrictH2Connection(h2.connection.H2Connection):
    """``H2Connection`` with the stream errors and error codes of the module docstring."""

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.encoder = StaticTableEncoder()
        self.decoder = FastDecoder()
        self.decoder.max_header_list_size = self.DEFAULT_MAX_HEADER_LIST_SIZE
        self.incoming_buffer = _QuietFrameBuffer(server=not config.client_side)
        table = self._frame_dispatch_table
        for frame_class, handler in list(table.items()):
            quiet = _QUIET.setdefault(
                frame_class, type(frame_class.__name__, (frame_class,), {"__repr__": _short_repr})
            )
            table[quiet] = handler
        self.refused_stream_ids: list[int] = []
        self.malformed_streams: list[tuple[int, str]] = []

    def _open_streams(self, remainder: int) -> int:
        """The open streams of one parity, as h2 counts them, or a bound when that is enough.

        h2 walks every tracked stream (forgetting closed ones) each time a stream
        opens, on both sides: O(streams) per request.  All it does with the number is
        compare it with a max concurrent streams; while fewer streams are tracked than
        either limit (and than ``_EXACT_COUNT_FROM``, so closed ones are still
        forgotten soon), the tracked number is below the limit as well.
        """
        tracked = len(self.streams)
        limit = min(
            self.local_settings.max_concurrent_streams,
            self.remote_settings.max_concurrent_streams,
            _EXACT_COUNT_FROM,
        )
        if tracked < limit:
            return tracked
        return int(super()._open_streams(remainder))

    def exact_open_streams(self) -> int:
        """Every open stream, either parity (a draining connection waits for 0)."""
        return int(super()._open_streams(0) + super()._open_streams(1))

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Any], list[Any]]:
        stream_id = frame.stream_id
        is_new_peer_stream = (
            stream_id not in self.streams
            and stream_id > self.highest_inbound_stream_id
            and stream_id % 2 == int(not self.config.client_side)
        )
        limit = self.local_settings.max_concurrent_streams
        if is_new_peer_stream and self.open_inbound_streams >= limit:
            return self._refuse_stream(frame)
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.ProtocolError as error:
            if isinstance(error.__cause__, HPACKError) and not isinstance(
                error.__cause__, OversizedHeaderListError
            ):
                raise CompressionError(str(error)) from error
            if str(error).startswith(_CONTENT_LENGTH_ERRORS) and stream_id in self.streams:
                return self._reset_malformed(stream_id, str(error)), []
            raise

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Any], list[Any]]:
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError as error:
            frames = self._reset_malformed(
                frame.stream_id,
                f"content-length {error.expected_length} but {error.actual_length} bytes of DATA",
            )
            increment = self._inbound_flow_control_window_manager.process_bytes(
                frame.flow_controlled_length
            )
            if increment:
                update = WindowUpdateFrame(0)
                update.window_increment = increment
                frames.append(update)
            return frames, []

    def _reset_malformed(self, stream_id: int, reason: str) -> list[Any]:
        """RST_STREAM PROTOCOL_ERROR for a stream whose message is malformed."""
        self.state_machine.process_input(h2.connection.ConnectionInputs.SEND_RST_STREAM)
        frames: list[Any] = self.streams[stream_id].reset_stream(ErrorCodes.PROTOCOL_ERROR)
        self.malformed_streams.append((stream_id, reason))
        return frames

    def _refuse_stream(self, frame: HeadersFrame) -> tuple[list[Any], list[Any]]:
        try:
            self.decoder.decode(frame.data, raw=True)
        except OversizedHeaderListError as error:
            raise h2.exceptions.DenialOfServiceError(f"Oversized header block: {error}") from error
        except HPACKError as error:
            raise CompressionError(f"Error decoding header block: {error}") from error
        self.highest_inbound_stream_id = frame.stream_id
        self._closed_streams[frame.stream_id] = StreamClosedBy.SEND_RST_STREAM
        self.refused_stream_ids.append(frame.stream_id)
        refusal = RstStreamFrame(frame.stream_id)
        refusal.error_code = ErrorCodes.REFUSED_STREAM
        return [refusal], []
