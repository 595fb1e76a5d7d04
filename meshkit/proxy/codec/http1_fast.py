"""HTTP/1.1 on the hot path: llhttp (through httptools) parses, h11 stays the reference.

The codecs here have exactly the interface of ``http1``'s and answer exactly
as they do; ``tests/unit/test_codec_differential.py`` feeds both the same
valid and hostile bytes, split at every boundary, and compares the events.

How the two agree by construction:

* every request head passes HARDENING.md's rules: ``check_request_head`` on
  the reference path, and on the fast path h11's own line grammar (one regex
  over the block) plus ``check_head_size`` and ``check_request_fields`` on the
  fields llhttp parsed -- the same functions, so the same answers;
* the fast path takes only the common shape -- CRLF line endings, no
  ``Transfer-Encoding``, a plain ``Content-Length`` or no body, HTTP/1.0 or
  1.1, a head llhttp accepts in strict mode -- and hands anything else, byte
  for byte, to the h11 codec it extends (which then answers or refuses);
* a response head llhttp does not accept is handed to h11 the same way,
  before any event of it has been returned.

Serialising is a join of the header block; the connection-management rules
h11 applies to a response (``connection: close`` for HTTP/1.0 peers and
closing requests, chunked when a 1.1 response has no length) are repeated in
``_response_framing``.
"""

from __future__ import annotations

import os
import re
from collections import deque
from typing import Any

import h11
import httptools

from meshkit.proxy.codec.http1 import (
    _H11_SLACK,
    _HEAD_END,
    Http1ClientCodec,
    Http1ServerCodec,
)
from meshkit.proxy.codec.messages import (
    END_OF_BODY,
    NEED_DATA,
    Body,
    Headers,
    ProtocolRefusal,
    RequestEvent,
    RequestHead,
    ResponseEvent,
    ResponseHead,
)
from meshkit.proxy.codec.request_rules import check_head_size, check_request_fields
from meshkit.proxy.config import Limits

CODEC_ENV = "MESHKIT_HTTP1_CODEC"

# h11's grammar (h11/_abnf.py) for a whole head block at once, so that the fast
# path takes exactly the heads h11 accepts; llhttp is stricter still in places.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VALUE = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
_HEADER_LINES = rb"(?:\r\n" + _TOKEN + rb":[ \t]*" + _FIELD_VALUE + rb"[ \t]*)*"
_REQUEST_BLOCK = re.compile(_TOKEN + rb" [\x21-\x7e]+ HTTP/1\.[01]" + _HEADER_LINES)
_RESPONSE_BLOCK = re.compile(
    rb"HTTP/[0-9]\.[0-9] [2-9][0-9]{2}(?: (?:[ \t]|[^\x00\s])*)?" + _HEADER_LINES
)
_NO_BODY_STATUSES = frozenset({204, 304})


def fast_codec_enabled() -> bool:
    """False when ``MESHKIT_HTTP1_CODEC=h11`` asks for the reference codec (debugging)."""
    return os.environ.get(CODEC_ENV, "fast") != "h11"


def new_server_codec(limits: Limits) -> Http1ServerCodec:
    return FastServerCodec(limits) if fast_codec_enabled() else Http1ServerCodec(limits)


def new_client_codec(limits: Limits) -> Http1ClientCodec:
    return FastClientCodec(limits) if fast_codec_enabled() else Http1ClientCodec(limits)


def _has_close_token(value: bytes) -> bool:
    return any(token.strip().lower() == b"close" for token in value.split(b","))


def serialise_head(start_line: bytes, headers: Headers) -> bytes:
    """The start line and header block; refuses a CR, LF or NUL that would split a line."""
    parts = [start_line]
    for name, value in headers:
        parts.append(name + b": " + value)
    parts.append(b"\r\n")
    block = b"\r\n".join(parts)
    lines = len(headers) + 2
    if block.count(b"\n") != lines or block.count(b"\r") != lines or b"\0" in block:
        raise ValueError("an outgoing start line or header holds CR, LF or NUL")
    return block


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response_framing(
    head: ResponseHead, *, request_keep_alive: bool, request_is_head: bool, client_is_http11: bool
) -> tuple[Headers, bool, bool]:
    """The headers to send, whether the body is chunked, and keep-alive -- as h11 decides.

    A response without ``content-length`` (other than 204/304) is chunked for a
    1.1 client and delimited by closing the connection for a 1.0 one; a
    connection that will not be reused says ``Connection: close``.
    """
    headers = head.headers
    has_length = False
    has_transfer_encoding = False
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"content-length":
            has_length = True
        elif name == b"transfer-encoding":
            has_transfer_encoding = True
        elif name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    keep_alive = request_keep_alive and b"close" not in tokens
    chunked = False
    if head.status not in _NO_BODY_STATUSES and (has_transfer_encoding or not has_length):
        headers = [
            (name, value)
            for name, value in headers
            if name != b"transfer-encoding" and name != b"content-length"
        ]
        if client_is_http11:
            headers.append((b"Transfer-Encoding", b"chunked"))
            chunked = not request_is_head
        else:
            keep_alive = False
    if not keep_alive:
        tokens.discard(b"keep-alive")
        tokens.add(b"close")
        headers = [(name, value) for name, value in headers if name != b"connection"]
        headers.append((b"Connection", b", ".join(sorted(tokens))))
    return headers, chunked, keep_alive


class _RequestCollector:
    """httptools callbacks for one request head."""

    __slots__ = ("headers", "target")

    def __init__(self) -> None:
        self.target = b""
        self.headers: Headers = []

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value.rstrip(b" \t")))


class FastServerCodec(Http1ServerCodec):
    """``Http1ServerCodec`` with llhttp parsing the common request shape."""

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self._in_fast = False
        self._remaining = 0  # body bytes of the current request still to come
        self._request_keep_alive = True
        self._request_is_head = False
        self._client_is_http11 = True
        self._waiting_100 = False
        self._response_chunked = False
        self._response_done = False
        self._response_keep_alive = True
        self._end_returned = False
        self._fast_head = RequestHead(method=b"", target=b"", headers=[])

    @property
    def reading_head(self) -> bool:
        return not self._in_fast and self._conn is None

    @property
    def expects_continue(self) -> bool:
        if self._in_fast:
            return self._waiting_100
        return super().expects_continue

    @property
    def request_complete(self) -> bool:
        if self._in_fast:
            return self._remaining == 0
        return super().request_complete

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._in_fast:
            if data:
                self._buffer += data
            else:
                self._peer_closed = True
        else:
            super().receive_data(data)

    def next_event(self) -> RequestEvent:
        if self._in_fast:
            return self._next_body_event()
        if self._conn is None and self._start_fast_message():
            return self._fast_head
        return super().next_event()

    def _next_body_event(self) -> RequestEvent:
        remaining = self._remaining
        if remaining == 0:
            if self._end_returned:
                return NEED_DATA
            self._end_returned = True
            self._waiting_100 = False
            return END_OF_BODY
        buffer = self._buffer
        if not buffer:
            if self._peer_closed:
                raise ProtocolRefusal(
                    400, "malformed request: peer closed in the middle of the body"
                )
            return NEED_DATA
        self._waiting_100 = False
        if len(buffer) <= remaining:
            data = bytes(buffer)
            self._buffer = bytearray()
        else:
            data = bytes(buffer[:remaining])
            del buffer[:remaining]
        self._remaining = remaining - len(data)
        return Body(data=data)

    def _start_fast_message(self) -> bool:
        """Take the next request on the fast path if it has the common shape."""
        buffer = self._buffer
        if buffer.startswith((b"\r", b"\n")):
            return False  # leading empty lines: the reference skips them
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        match = _HEAD_END.search(buffer, 0, end + 4)
        if match is None or match.start() != end:
            return False  # a bare LF ends the head earlier
        if _REQUEST_BLOCK.fullmatch(buffer, 0, end) is None:
            return False  # bare LF line endings, or a head h11 may refuse
        collector = _RequestCollector()
        parser = httptools.HttpRequestParser(collector)
        try:
            parser.feed_data(buffer[: end + 4])
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return False
        version = parser.get_http_version()
        if version not in ("1.1", "1.0") or parser.should_upgrade():
            return False
        headers = collector.headers
        # The block matched h11's grammar line by line, so of check_request_head
        # only the size and the field rules are left to apply.
        check_head_size(end, len(headers), self._limits)
        length, chunked = check_request_fields(headers, self._limits)
        if chunked:
            return False
        keep_alive = version == "1.1"
        expects_continue = False
        for name, value in headers:
            if name == b"connection" and _has_close_token(value):
                keep_alive = False
            elif name == b"expect" and value.lower() == b"100-continue":
                expects_continue = version == "1.1"
        method = parser.get_method()
        self._fast_head = RequestHead(
            method=method,
            target=collector.target,
            headers=[(name, value) for name, value in headers if b"_" not in name],
            http_version=version.encode(),
        )
        del buffer[: end + 4]
        self._in_fast = True
        self._remaining = length or 0
        self._request_keep_alive = keep_alive
        self._request_is_head = method == b"HEAD"
        self._client_is_http11 = version == "1.1"
        self._waiting_100 = expects_continue
        self._response_done = False
        self._response_chunked = False
        self._response_keep_alive = keep_alive
        self._end_returned = False
        return True

    def send_informational(self, status: int) -> bytes:
        if not self._in_fast:
            return super().send_informational(status)
        self._waiting_100 = False
        return b"HTTP/1.1 %d \r\n\r\n" % status

    def send_head(self, head: ResponseHead) -> bytes:
        if not self._in_fast:
            return super().send_head(head)
        self._waiting_100 = False
        headers, self._response_chunked, self._response_keep_alive = _response_framing(
            head,
            request_keep_alive=self._request_keep_alive,
            request_is_head=self._request_is_head,
            client_is_http11=self._client_is_http11,
        )
        return serialise_head(b"HTTP/1.1 %d %s" % (head.status, head.reason), headers)

    def send_body(self, data: bytes) -> bytes:
        if not self._in_fast:
            return super().send_body(data)
        if self._response_chunked:
            return _chunk(data) if data else b""
        return data

    def send_end(self) -> bytes:
        if not self._in_fast:
            return super().send_end()
        self._response_done = True
        return b"0\r\n\r\n" if self._response_chunked else b""

    def finish_cycle(self) -> bool:
        if not self._in_fast:
            return super().finish_cycle()
        if not (self._response_done and self._remaining == 0 and self._response_keep_alive):
            return False
        self._in_fast = False
        return True


class _NotTheCommonShape(Exception):
    """Raised inside an llhttp callback to hand a response head to h11."""


class _ResponseCollector:
    """httptools callbacks for one exchange's response, turned into events."""

    def __init__(self, codec: FastClientCodec) -> None:
        self.codec = codec
        self.status = 0
        self.reason = b""
        self.headers: Headers = []

    def on_message_begin(self) -> None:
        self.codec._message_begin()

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.codec._headers_complete(self)

    def on_body(self, body: bytes) -> None:
        self.codec._body(body)

    def on_message_complete(self) -> None:
        self.codec._message_complete()


class FastClientCodec(Http1ClientCodec):
    """``Http1ClientCodec`` with llhttp framing responses; h11 takes odd ones over."""

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self._limits = limits
        self._delegated = False
        self._start_exchange()

    def _start_exchange(self) -> None:
        self._collector = _ResponseCollector(self)
        self._parser: Any = httptools.HttpResponseParser(self._collector)
        self._events: deque[ResponseEvent] = deque()
        self._head_bytes = bytearray()  # kept until the head is parsed, for h11
        self._got_head = False
        self._response_done = False
        self._until_close = False
        self._reusable = True
        self._error: ProtocolRefusal | None = None
        self._method = b"GET"
        self._request_chunked = False
        self._request_unsent = 0
        self._request_done = False
        self._peer_closed = False

    def _headers_complete(self, collector: _ResponseCollector) -> None:
        status = self._parser.get_status_code()
        headers = collector.headers
        lengths = 0
        transfer_encodings: list[bytes] = []
        for name, value in headers:
            if name == b"content-length":
                lengths += 1
            elif name == b"transfer-encoding":
                transfer_encodings.append(value.lower())
            elif name == b"connection" and _has_close_token(value):
                self._reusable = False
        if lengths > 1 or (transfer_encodings and transfer_encodings != [b"chunked"]):
            # Framing the fast path does not take: h11 takes the exchange over
            # (``receive_data`` sees this as a parser error before the head).
            raise _NotTheCommonShape
        self._got_head = True
        self._head_bytes = bytearray()
        collector.headers = []  # trailers of a chunked body are not passed on (as h11)
        version = self._parser.get_http_version()
        if version != "1.1":
            self._reusable = False
        self._events.append(
            ResponseHead(
                status=status,
                headers=headers,
                reason=collector.reason,
                http_version=version.encode(),
            )
        )
        if self._method == b"HEAD":
            self._finish_response()
        elif not (lengths or transfer_encodings) and status not in _NO_BODY_STATUSES:
            self._until_close = True
            self._reusable = False

    def _message_begin(self) -> None:
        if self._response_done:
            self._reusable = False  # a second response to one request

    def _body(self, body: bytes) -> None:
        if self._response_done:
            self._reusable = False  # bytes after a HEAD response
        else:
            self._events.append(Body(data=body))

    def _message_complete(self) -> None:
        if not self._response_done:
            self._finish_response()

    def _finish_response(self) -> None:
        self._response_done = True
        self._events.append(END_OF_BODY)

    def _delegate(self) -> None:
        """Give this exchange to h11 with every byte of the response received so far."""
        self._delegated = True
        conn = self._conn
        conn.send(
            h11.Request(
                method=self._method,
                target=b"/",
                headers=[(b"host", b"delegated"), (b"transfer-encoding", b"chunked")],
            )
        )
        if self._request_done:
            conn.send(h11.EndOfMessage())
        conn.receive_data(bytes(self._head_bytes))
        if self._peer_closed:
            conn.receive_data(b"")

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._delegated:
            super().receive_data(data)
            return
        if not data:
            self._peer_closed = True
            if self._until_close and not self._response_done:
                self._finish_response()
            return
        if self._response_done:
            self._reusable = False
            return
        if not self._got_head:
            self._head_bytes += data
            head_end = _HEAD_END.search(self._head_bytes)
            if head_end is None:
                if len(self._head_bytes) > self._limits.max_header_bytes + _H11_SLACK:
                    self._delegate()
                return
            if (
                head_end.group() != b"\r\n\r\n"
                or _RESPONSE_BLOCK.fullmatch(self._head_bytes, 0, head_end.start()) is None
            ):
                self._delegate()  # 1xx, bare LF, or a head h11 may refuse
                return
            data = bytes(self._head_bytes)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            # (methods, not the attributes checked above: the callbacks ran since)
            if not self._head_seen():
                self._delegate()
            elif self._finished():
                self._reusable = False
            else:
                self._error = ProtocolRefusal(502, f"malformed response from the endpoint: {error}")

    def _head_seen(self) -> bool:
        return self._got_head

    def _finished(self) -> bool:
        return self._response_done

    def next_event(self) -> ResponseEvent:
        if self._delegated:
            return super().next_event()
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        if self._peer_closed:
            if self._got_head:
                raise ProtocolRefusal(
                    502,
                    "malformed response from the endpoint: "
                    "peer closed connection without sending complete message body",
                )
            if self._head_bytes:
                self._delegate()
                return super().next_event()
            raise ProtocolRefusal(502, "the endpoint closed the connection before responding")
        return NEED_DATA

    def send_head(self, head: RequestHead) -> bytes:
        self._method = head.method
        self._request_unsent = 0  # as h11: a head with neither header frames no body
        for name, value in head.headers:
            if name == b"transfer-encoding":
                self._request_chunked = value.strip().lower() == b"chunked"
            elif name == b"content-length":
                self._request_unsent = int(value)
        return serialise_head(b"%s %s HTTP/1.1" % (head.method, head.target), head.headers)

    def send_body(self, data: bytes) -> bytes:
        """Body bytes as framed by the head; never a byte the head does not frame.

        Like h11, ``h11.LocalProtocolError`` for more bytes than the head's
        ``Content-Length`` (or any body under a head that frames none): such
        bytes would reach the endpoint as the start of another request.
        """
        if self._delegated:
            self._conn.send(h11.Data(data=data))
        if self._request_chunked:
            return _chunk(data) if data else b""
        if len(data) > self._request_unsent:
            self._reusable = False
            raise h11.LocalProtocolError("Too much data for declared Content-Length")
        self._request_unsent -= len(data)
        return data

    def send_end(self) -> bytes:
        if not self._request_chunked and self._request_unsent:
            self._reusable = False
            raise h11.LocalProtocolError("Too little data for declared Content-Length")
        self._request_done = True
        if self._delegated:
            self._conn.send(h11.EndOfMessage())
        return b"0\r\n\r\n" if self._request_chunked else b""

    def finish_cycle(self) -> bool:
        if self._delegated:
            if not super().finish_cycle():
                return False
            self._delegated = False
            self._start_exchange()
            return True
        if not (self._response_done and self._request_done and self._reusable):
            return False
        self._start_exchange()
        return True
