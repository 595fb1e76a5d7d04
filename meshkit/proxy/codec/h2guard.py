"""Flood and abuse counters for HTTP/2 connections (pure objects, injected clock).

h2 (python-hyper) answers every PING and SETTINGS frame and accepts any number
of RST_STREAM frames; it counts none of them.  These objects do the counting so
that ``meshkit.proxy.codec.http2`` can decide to end a connection whose peer abuses
the protocol (HARDENING.md, HTTP/2 section):

* ``RapidResetDetector``: CVE-2023-44487.  We follow Envoy
  (``source/common/http/conn_manager_impl.cc``, ``maybeDrainDueToPrematureResets``
  with the defaults of ``overload.premature_reset_total_stream_count`` = 500 and
  ``premature_reset_min_stream_lifetime_seconds`` = 1): once 500 streams have
  closed on a connection, if at least half of them were reset by the peer (or
  refused by us) less than one second after they opened, the connection is
  closed with ``GOAWAY ENHANCE_YOUR_CALM``.  Envoy's rule was chosen over
  nghttp2's token bucket because it depends on the peer's behaviour only, not on
  how fast the proxy happens to process frames.
* ``OutboundFrameBudget``: frames queued for a peer that does not read.  Envoy
  (``max_outbound_control_frames`` = 1000, ``max_outbound_frames`` = 10 000)
  closes the connection when either bound is passed; a PING or SETTINGS flood
  from a peer that never reads then costs a bounded amount of memory.

Nothing here reads a clock: callers pass ``now`` (seconds, monotonic).
"""

from __future__ import annotations

import attrs

PREMATURE_RESET_MIN_STREAM_LIFETIME = 1.0
PREMATURE_RESET_TOTAL_STREAM_COUNT = 500
MAX_OUTBOUND_CONTROL_FRAMES = 1000
MAX_OUTBOUND_FRAMES = 10_000


@attrs.define(kw_only=True)
class RapidResetDetector:
    """Counts streams that closed early by the peer's doing (Envoy's premature resets).

    Call ``stream_opened`` when a peer's HEADERS opens a stream,
    ``stream_reset_by_peer`` / ``stream_refused`` / ``stream_closed`` when it
    ends, and ask ``should_close`` after each.
    """

    min_stream_lifetime: float = PREMATURE_RESET_MIN_STREAM_LIFETIME
    total_stream_threshold: int = PREMATURE_RESET_TOTAL_STREAM_COUNT
    closed_streams: int = 0
    premature_resets: int = 0
    _opened_at: dict[int, float] = attrs.field(factory=dict, init=False)

    def stream_opened(self, stream_id: int, *, now: float) -> None:
        self._opened_at[stream_id] = now

    def stream_reset_by_peer(self, stream_id: int, *, now: float) -> None:
        """The peer sent RST_STREAM; premature when younger than ``min_stream_lifetime``."""
        opened = self._opened_at.pop(stream_id, None)
        if opened is None:
            return
        self.closed_streams += 1
        if now - opened < self.min_stream_lifetime:
            self.premature_resets += 1

    def stream_refused(self, stream_id: int) -> None:
        """We refused a stream (over a concurrency limit): counts as premature."""
        self._opened_at.pop(stream_id, None)
        self.closed_streams += 1
        self.premature_resets += 1

    def stream_closed(self, stream_id: int) -> None:
        """The stream ended normally (or we reset it): not premature."""
        if self._opened_at.pop(stream_id, None) is not None:
            self.closed_streams += 1

    def should_close(self) -> bool:
        if self.closed_streams < self.total_stream_threshold:
            return False
        return self.premature_resets * 2 >= self.closed_streams

    def describe(self) -> str:
        return (
            f"{self.premature_resets} of {self.closed_streams} streams were reset by the peer "
            f"within {self.min_stream_lifetime:g} s of opening (rapid reset, CVE-2023-44487)"
        )


# Frame types (RFC 9113 section 6) that count as control frames in Envoy's sense:
# everything the peer can make us send without a request of ours.
FRAME_TYPE_DATA = 0x0
FRAME_TYPE_HEADERS = 0x1
FRAME_TYPE_CONTINUATION = 0x9
_NON_CONTROL_FRAME_TYPES = frozenset({FRAME_TYPE_DATA, FRAME_TYPE_HEADERS, FRAME_TYPE_CONTINUATION})
FRAME_HEADER_LENGTH = 9


@attrs.frozen(kw_only=True)
class FrameCount:
    frames: int
    control_frames: int


def count_frames(serialized: bytes) -> FrameCount:
    """Count the frames (and the control frames) in a run of whole serialized frames.

    ``serialized`` is what h2's ``data_to_send`` returned: whole frames only,
    possibly preceded by the client connection preface, which is skipped.
    """
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    offset = len(preface) if serialized.startswith(preface) else 0
    frames = 0
    control = 0
    while offset + FRAME_HEADER_LENGTH <= len(serialized):
        length = int.from_bytes(serialized[offset : offset + 3], "big")
        frame_type = serialized[offset + 3]
        frames += 1
        if frame_type not in _NON_CONTROL_FRAME_TYPES:
            control += 1
        offset += FRAME_HEADER_LENGTH + length
    return FrameCount(frames=frames, control_frames=control)


@attrs.define(kw_only=True)
class OutboundFrameBudget:
    """Frames queued for the peer but not yet handed to the transport."""

    max_control_frames: int = MAX_OUTBOUND_CONTROL_FRAMES
    max_frames: int = MAX_OUTBOUND_FRAMES
    queued_frames: int = 0
    queued_control_frames: int = 0

    def queued(self, count: FrameCount) -> None:
        self.queued_frames += count.frames
        self.queued_control_frames += count.control_frames

    def written(self, count: FrameCount) -> None:
        self.queued_frames -= count.frames
        self.queued_control_frames -= count.control_frames

    def exceeded(self) -> bool:
        return (
            self.queued_control_frames > self.max_control_frames
            or self.queued_frames > self.max_frames
        )

    def describe(self) -> str:
        return (
            f"{self.queued_control_frames} control frames and {self.queued_frames} frames "
            f"queued for a peer that is not reading (bounds: {self.max_control_frames} and "
            f"{self.max_frames})"
        )
