"""HTTP/1.1 on the hot path: llhttp (through httptools) parses, h11 stays the reference.

The codecs here have exactly the interface of ``http1``'s and answer exactly
as they do; ``tests/unit/test_codec_differential.py`` feeds both the same
valid and hostile bytes, split at every boundary, and compares the events.

How the two agree by construction:

* every request head passes HARDENING.md's rules: ``check_request_head`` on
  the reference path, and on the fast path h11's own line grammar (one regex
  over the block) plus ``check_fields_size`` and ``check_request_fields`` on the
  fields llhttp parsed -- the same functions, so the same answers;
* the fast path takes only the common shape -- CRLF line endings, no
  ``Transfer-Encoding``, a plain ``Content-Length`` or no body, HTTP/1.0 or
  1.1, a head llhttp accepts in strict mode -- and hands anything else, byte
  for byte, to the h11 codec it extends (which then answers or refuses);
* a response head llhttp does not accept is handed to h11 the same way,
  before any event of it has been returned (``http1_fast_client``).

Serialising is a join of the header block; the connection-management rules
h11 applies to a response (``connection: close`` for HTTP/1.0 peers and
closing requests, chunked when a 1.1 response has no length) are repeated in
``http1_wire.response_framing``.
"""

from __future__ import annotations

import os

import httptools

from meshkit.proxy.codec.http1 import _HEAD_END, Http1ClientCodec, Http1ServerCodec
from meshkit.proxy.codec.http1_fast_client import FastClientCodec
from meshkit.proxy.codec.http1_wire import (
    REQUEST_BLOCK,
    chunk,
    has_close_token,
    response_framing,
    serialise_head,
)
from meshkit.proxy.codec.messages import (
    END_OF_BODY,
    NEED_DATA,
    Body,
    ClientRefusal,
    Headers,
    RequestEvent,
    RequestHead,
    ResponseHead,
)
from meshkit.proxy.codec.request_rules import (
    check_fields_size,
    check_request_fields,
    check_request_target,
    normalise_target,
)
from meshkit.proxy.config import Limits

CODEC_ENV = "MESHKIT_HTTP1_CODEC"


def fast_codec_enabled() -> bool:
    """False when ``MESHKIT_HTTP1_CODEC=h11`` asks for the reference codec (debugging)."""
    return os.environ.get(CODEC_ENV, "fast") != "h11"


def new_server_codec(limits: Limits) -> Http1ServerCodec:
    return FastServerCodec(limits) if fast_codec_enabled() else Http1ServerCodec(limits)


def new_client_codec(limits: Limits) -> Http1ClientCodec:
    return FastClientCodec(limits) if fast_codec_enabled() else Http1ClientCodec(limits)


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
                raise ClientRefusal(400, "malformed request: peer closed in the middle of the body")
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
        if REQUEST_BLOCK.fullmatch(buffer, 0, end) is None:
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
        check_fields_size(end, headers, self._limits)
        length, chunked = check_request_fields(headers, self._limits)
        if chunked:
            return False
        keep_alive = version == "1.1"
        expects_continue = False
        for name, value in headers:
            if name == b"connection" and has_close_token(value):
                keep_alive = False
            elif name == b"expect" and value.lower() == b"100-continue":
                expects_continue = version == "1.1"
        method = parser.get_method()
        check_request_target(method, collector.target)
        self._fast_head = RequestHead(
            method=method,
            target=normalise_target(collector.target),
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
        headers, self._response_chunked, self._response_keep_alive = response_framing(
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
            return chunk(data) if data else b""
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


__all__ = [
    "FastClientCodec",
    "FastServerCodec",
    "fast_codec_enabled",
    "new_client_codec",
    "new_server_codec",
    "serialise_head",
]
