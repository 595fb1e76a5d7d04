"""The per-stream events of the HTTP/2 codec (``meshkit.proxy.codec.http2``).

Heads are the protocol-neutral ``RequestHead`` / ``ResponseHead`` of
``meshkit.proxy.codec.messages``; everything else is HTTP/2's own.
"""

from __future__ import annotations

import attrs

from meshkit.proxy.codec.messages import Headers, RequestHead, ResponseHead


@attrs.frozen(kw_only=True)
class RequestReceived:
    """A peer opened ``stream_id`` with a valid request head (server side)."""

    stream_id: int
    head: RequestHead
    scheme: bytes
    end_stream: bool


@attrs.frozen(kw_only=True)
class ResponseReceived:
    """The final response head for a stream we opened (client side); 1xx are dropped."""

    stream_id: int
    head: ResponseHead
    end_stream: bool


@attrs.frozen(kw_only=True)
class DataReceived:
    """Body bytes; acknowledge ``flow_controlled_length`` once they are consumed."""

    stream_id: int
    data: bytes
    flow_controlled_length: int
    end_stream: bool


@attrs.frozen(kw_only=True)
class TrailersReceived:
    """Trailing fields; they always end the peer's side of the stream."""

    stream_id: int
    trailers: Headers


@attrs.frozen(kw_only=True)
class StreamReset:
    """The stream is gone: reset by the peer (``by_peer``) or by us for a reason."""

    stream_id: int
    error_code: int
    by_peer: bool
    reason: str = ""


@attrs.frozen(kw_only=True)
class WindowOpened:
    """The peer's send window grew; ``stream_id`` 0 means every stream may send more."""

    stream_id: int


@attrs.frozen(kw_only=True)
class ConnectionEnded:
    """No more streams: GOAWAY from the peer (``by_peer``) or a fatal error on our side.

    Streams with an id above ``last_stream_id`` were never processed by the
    peer and may be retried.  After a local error the transport should be
    closed once the queued bytes (a GOAWAY) have been written.
    """

    error_code: int
    last_stream_id: int
    by_peer: bool
    reason: str = ""


Http2Event = (
    RequestReceived
    | ResponseReceived
    | DataReceived
    | TrailersReceived
    | StreamReset
    | WindowOpened
    | ConnectionEnded
)
