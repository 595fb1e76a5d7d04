"""HTTP/1.1 through h11, with the rules of HARDENING.md that h11 leaves to us.

Both codecs are sans-I/O: bytes in through ``receive_data``, events out through
``next_event``; events in through ``send_*``, bytes out.  They never touch a
socket, so every rule is tested by feeding raw bytes.

h11 is lenient in a few places a proxy must not be: it silently unfolds
obs-fold lines and lets ``Transfer-Encoding`` win over ``Content-Length``.  The
server codec therefore reads each request head itself (up to the blank line),
checks the raw block, and only then hands it to a fresh ``h11.Connection``.
A fresh connection per request also keeps pipelined bytes out of h11 until
their own head has been checked (``trailing_data`` carries them over).
"""

from __future__ import annotations

import re
from typing import Any

import h11

from meshkit.proxy.codec.messages import (
    CLOSED,
    END_OF_BODY,
    NEED_DATA,
    Body,
    ClientRefusal,
    Headers,
    ProtocolRefusal,
    RequestEvent,
    RequestHead,
    ResponseEvent,
    ResponseHead,
)
from meshkit.proxy.codec.request_rules import (
    MESH_HEADER_ALLOWANCE,
    check_request_head,
    check_request_target,
    normalise_target,
)
from meshkit.proxy.codec.translate import reason_phrase
from meshkit.proxy.config import Limits

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LAST_CHUNK = re.compile(rb"0+(?:[ \t]*;[^\r\n]*)?\r\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")

# Room for the request line and framing above the header limit, so the header
# limit (431) is what a peer hits first, not h11's own (which would answer 400).
_H11_SLACK = 16 * 1024


def refusal_bytes(
    status: int, reason: str, *, flag: str = "", headers: Headers | None = None
) -> bytes:
    """A complete ``Connection: close`` response, for when no codec can be trusted.

    Used to answer requests the codec refused before (or while) h11 parsed them.
    """
    body = (reason + "\n").encode()
    lines = [
        b"HTTP/1.1 %d %s" % (status, reason_phrase(status)),
        b"content-type: text/plain; charset=utf-8",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    if flag:
        lines.append(b"x-meshkit-flag: " + flag.encode())
    lines.append(b"x-meshkit-reason: " + reason.encode("ascii", "replace"))
    for name, value in headers or ():
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _clean_headers(raw: Any) -> Headers:
    """h11 headers as (lower-case name, value), dropping names with ``_``.

    ``Content_Length`` must never alias ``Content-Length`` in a server that maps
    ``-`` to ``_`` (CGI, WSGI): such names are dropped, as nginx and Envoy do.
    """
    return [(name, value) for name, value in raw if b"_" not in name]


class _H11Sender:
    """What both sides of an h11 connection write the same way: body pieces and the end."""

    _conn: Any

    def send_body(self, data: bytes) -> bytes:
        out: bytes = self._conn.send(h11.Data(data=data))
        return out

    def send_end(self) -> bytes:
        out: bytes = self._conn.send(h11.EndOfMessage())
        return out


class Http1ServerCodec(_H11Sender):
    """The server side of one HTTP/1.1 connection (a listener's downstream peer)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._peer_closed = False
        self._conn: Any = None  # h11.Connection once the current head was checked

    @property
    def reading_head(self) -> bool:
        """True between requests and while a request head is still arriving."""
        return self._conn is None

    @property
    def has_buffered_bytes(self) -> bool:
        return bool(self._buffer)

    @property
    def expects_continue(self) -> bool:
        return self._conn is not None and bool(self._conn.they_are_waiting_for_100_continue)

    def take_tunnel_bytes(self) -> bytes:
        """After a CONNECT head: the bytes that followed it (the tunnel's first bytes)."""
        pending = self._buffer if self._conn is None else self._conn.trailing_data[0]
        data = bytes(pending)
        self._buffer = bytearray()
        return data

    @property
    def request_complete(self) -> bool:
        return self._conn is not None and self._conn.their_state is h11.DONE

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes from the peer; ``b""`` means the peer closed its side."""
        if self._conn is not None:
            self._conn.receive_data(data)
        elif data:
            self._buffer += data
        else:
            self._peer_closed = True

    def next_event(self) -> RequestEvent:
        """The next request event; raises ``ProtocolRefusal`` on bad input."""
        if self._conn is None:
            event = self._next_head()
            if event is not None:
                return event
        if self._conn.their_state is h11.SEND_BODY:
            self._refuse_bare_lf_in_trailers()
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as error:
            raise ClientRefusal(error.error_status_hint, f"malformed request: {error}") from None
        if type(event) is h11.Data:
            return Body(data=bytes(event.data))
        if type(event) is h11.Request:
            if event.http_version not in (b"1.1", b"1.0"):
                version = bytes(event.http_version).decode()
                raise ProtocolRefusal(505, f"malformed request: HTTP/{version} is not supported")
            method, target = bytes(event.method), bytes(event.target)
            check_request_target(method, target)
            return RequestHead(
                method=method,
                target=normalise_target(target),
                headers=_clean_headers(event.headers),
                http_version=bytes(event.http_version),
            )
        if type(event) is h11.EndOfMessage:
            return END_OF_BODY
        if event is h11.NEED_DATA or event is h11.PAUSED:
            self._refuse_bare_lf_in_chunk_lines()
            return NEED_DATA
        if type(event) is h11.ConnectionClosed:
            return CLOSED
        raise ProtocolRefusal(400, f"unexpected request event {type(event).__name__}")

    def _refuse_bare_lf_in_chunk_lines(self) -> None:
        """400 for a chunk line ended by a bare LF (h11 would wait for a CRLF forever).

        While a body is read, h11 keeps back only chunk framing it cannot
        parse yet (body bytes are handed out as they come), so a LF there
        without its CR can only end a malformed chunk line.
        """
        conn = self._conn
        if conn.their_state is not h11.SEND_BODY:
            return
        pending = bytes(conn._receive_buffer)
        line_feed = pending.find(b"\n")
        if line_feed >= 0 and pending[line_feed - 1 : line_feed] != b"\r":
            raise ClientRefusal(400, "malformed request: a chunk line ends with a bare LF")

    def _refuse_bare_lf_in_trailers(self) -> None:
        """400 for a trailer section with a bare LF, before h11 (which takes LF alone
        as a line end) reads it: the last chunk and its trailers may come in one call."""
        reader = self._conn._reader
        if not isinstance(getattr(reader, "_reading_trailer", None), bool):
            return  # not chunked
        pending = bytes(self._conn._receive_buffer)
        start = 0
        if not reader._reading_trailer:
            if reader._bytes_in_chunk:
                return  # chunk data comes first; this call stops after it
            discard = reader._bytes_to_discard
            if not pending.startswith(discard):
                return  # h11 refuses a bad chunk footer itself
            last = _LAST_CHUNK.match(pending, len(discard))
            if last is None:
                return
            start = last.end()
        end = pending.find(b"\r\n\r\n", start)
        stop = start + 2 if pending.startswith(b"\r\n", start) else end + 4 if end >= 0 else None
        if _BARE_LF.search(pending, start, len(pending) if stop is None else stop):
            raise ClientRefusal(400, "malformed request: a trailer line ends with a bare LF")

    def _next_head(self) -> RequestEvent | None:
        # RFC 9112 2.2: ignore at least one empty line before the request line.
        while self._buffer[:2] == b"\r\n":
            del self._buffer[:2]
        while self._buffer[:1] == b"\n":
            del self._buffer[:1]
        match = _HEAD_END.search(self._buffer)
        if match is None:
            if len(self._buffer) - MESH_HEADER_ALLOWANCE > self._limits.max_header_bytes:
                raise ProtocolRefusal(
                    431, f"request header block over {self._limits.max_header_bytes} bytes"
                )
            if self._peer_closed:
                if self._buffer:
                    raise ProtocolRefusal(400, "connection closed in the middle of a request head")
                return CLOSED
            return NEED_DATA
        check_request_head(bytes(self._buffer[: match.start()]), self._limits)
        conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes + _H11_SLACK
        )
        conn.receive_data(bytes(self._buffer))
        if self._peer_closed:
            conn.receive_data(b"")
        self._buffer = bytearray()
        self._conn = conn
        return None

    def send_informational(self, status: int) -> bytes:
        data: bytes = self._conn.send(h11.InformationalResponse(status_code=status, headers=[]))
        return data

    def send_head(self, head: ResponseHead) -> bytes:
        data: bytes = self._conn.send(
            h11.Response(status_code=head.status, headers=head.headers, reason=head.reason)
        )
        return data

    def finish_cycle(self) -> bool:
        """After a response: True when the connection may carry another request."""
        conn = self._conn
        if conn is None or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        data, closed = conn.trailing_data
        self._buffer = bytearray(data)
        self._peer_closed = closed
        self._conn = None
        return True


class Http1ClientCodec(_H11Sender):
    """The client side of one HTTP/1.1 connection to an endpoint (reusable)."""

    def __init__(self, limits: Limits) -> None:
        self._conn: Any = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=limits.max_header_bytes + _H11_SLACK
        )

    def receive_data(self, data: bytes | bytearray) -> None:
        self._conn.receive_data(data)

    def next_event(self) -> ResponseEvent:
        """The next response event, skipping 1xx; raises ``ProtocolRefusal`` (502)."""
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as error:
                raise ProtocolRefusal(
                    502, f"malformed response from the endpoint: {error}"
                ) from None
            if type(event) is h11.Data:
                return Body(data=bytes(event.data))
            if type(event) is h11.Response:
                return ResponseHead(
                    status=event.status_code,
                    headers=list(event.headers),
                    reason=bytes(event.reason),
                    http_version=bytes(event.http_version),
                )
            if type(event) is h11.InformationalResponse:
                continue
            if type(event) is h11.EndOfMessage:
                return END_OF_BODY
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return NEED_DATA
            if type(event) is h11.ConnectionClosed:
                return CLOSED
            raise ProtocolRefusal(502, f"unexpected response event {type(event).__name__}")

    def send_head(self, head: RequestHead) -> bytes:
        data: bytes = self._conn.send(
            h11.Request(method=head.method, target=head.target, headers=head.headers)
        )
        return data

    def finish_cycle(self) -> bool:
        """After a full exchange: True (and reset) when the connection can be reused."""
        conn = self._conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False
