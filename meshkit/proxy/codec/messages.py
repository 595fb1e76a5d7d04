"""The protocol-neutral messages that cross the codec boundary.

``http1`` (and later ``http2``) turn bytes into these events and these events
into bytes; the forwarding code in ``server`` and ``forward`` only ever sees
them.  Header names are lower-cased bytes, values are bytes as received.
"""

from __future__ import annotations

import attrs

Headers = list[tuple[bytes, bytes]]


@attrs.frozen(kw_only=True)
class RequestHead:
    method: bytes
    target: bytes
    headers: Headers
    http_version: bytes = b"1.1"


@attrs.frozen(kw_only=True)
class ResponseHead:
    status: int
    headers: Headers
    reason: bytes = b""
    http_version: bytes = b"1.1"


@attrs.frozen(kw_only=True)
class Body:
    """A chunk of a message body, in the order received."""

    data: bytes


@attrs.frozen(kw_only=True)
class EndOfBody:
    """The message (head and body) is complete."""


@attrs.frozen(kw_only=True)
class NeedData:
    """The codec needs more bytes from the peer before it can say more."""


@attrs.frozen(kw_only=True)
class Closed:
    """The peer closed its side cleanly between messages."""


NEED_DATA = NeedData()
END_OF_BODY = EndOfBody()
CLOSED = Closed()

RequestEvent = RequestHead | Body | EndOfBody | NeedData | Closed
ResponseEvent = ResponseHead | Body | EndOfBody | NeedData | Closed


class ProtocolRefusal(Exception):
    """The peer broke the protocol or a limit; answer ``status`` and close.

    ``reason`` is meant for a person reading the response body or the log.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class ClientRefusal(ProtocolRefusal):
    """A refusal of what the client sent, found while its request was being forwarded.

    Never the endpoint's fault: the answer names no instance and no ``UPE``.
    """


def header_value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of ``name`` (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None
