"""The client side of HTTP/1.1 on the hot path: llhttp frames responses, h11 takes odd ones.

``FastClientCodec`` has exactly the interface of ``http1.Http1ClientCodec``
and answers as it does (``tests/unit/test_codec_differential.py``): a response
head llhttp does not accept, or one outside the common shape, is handed to
h11 with every byte received so far, before any event of it was returned.
It never sends a request body byte that the request head does not frame.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import h11
import httptools

from meshkit.proxy.codec.http1 import _H11_SLACK, _HEAD_END, Http1ClientCodec
from meshkit.proxy.codec.http1_wire import (
    NO_BODY_STATUSES,
    RESPONSE_BLOCK,
    chunk,
    has_close_token,
    serialise_head,
)
from meshkit.proxy.codec.messages import (
    END_OF_BODY,
    NEED_DATA,
    Body,
    Headers,
    ProtocolRefusal,
    RequestHead,
    ResponseEvent,
    ResponseHead,
)
from meshkit.proxy.config import Limits


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
            elif name == b"connection" and has_close_token(value):
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
        elif not (lengths or transfer_encodings) and status not in NO_BODY_STATUSES:
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
                or RESPONSE_BLOCK.fullmatch(self._head_bytes, 0, head_end.start()) is None
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
            return chunk(data) if data else b""
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
