"""The bare trio floor: an HTTP/1.1 proxy pair that only parses and forwards.

    python benchmarks/hopbench/triofloor.py outbound --listen PORT --to PORT --certs DIR
    python benchmarks/hopbench/triofloor.py inbound  --listen PORT --to PORT --certs DIR

The outbound proxy takes plain HTTP/1.1 and forwards every request over a
keep-alive mTLS connection (trio's ``SSLStream``, TLS 1.3, the certificates of
``certs.py``, the inbound's name verified as nginx's ``proxy_ssl_name`` does) to
the inbound proxy, which requires a client certificate and forwards to the
backend over plain TCP.  Each downstream connection gets its own upstream
connection, opened on its first request and kept for its life.

httptools frames every message; the head is rebuilt from what it parsed and
the body forwarded with the same framing (chunked bodies are re-chunked).  No
L7 features: no routing, retries, timeouts, limits, identity checks or logs.
This is what a trio proxy costs before any of meshkit's work, the floor
``hop.py`` shows beside meshkit.  Standalone on purpose (trio, httptools and
the standard library only), so that each proxy is its own small process.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

import httptools
import trio

RECEIVE_BYTES = 65536
INBOUND_DNS_NAME = "inbound.bench.meshkit.local"
END = object()


class Framer:
    """httptools callbacks turned into the bytes to forward, message by message."""

    def __init__(self, *, response: bool) -> None:
        self._response = response
        self._parser: httptools.HttpRequestParser | httptools.HttpResponseParser = (
            httptools.HttpResponseParser(self) if response else httptools.HttpRequestParser(self)
        )
        self._start = b""
        self._headers: list[bytes] = []
        self._chunked = False
        self._pending: list[object] = []

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def take(self) -> tuple[bytes, bool]:
        """The bytes of the current message parsed so far, and whether it has ended."""
        out: list[bytes] = []
        while self._pending:
            item = self._pending.pop(0)
            if item is END:
                return b"".join(out), True
            assert isinstance(item, bytes)
            out.append(item)
        return b"".join(out), False

    def on_message_begin(self) -> None:
        self._start, self._headers, self._chunked = b"", [], False

    def on_url(self, url: bytes) -> None:
        self._start += url

    def on_status(self, reason: bytes) -> None:
        self._start += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            self._chunked = True
        self._headers.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        version = self._parser.get_http_version().encode()
        if isinstance(self._parser, httptools.HttpResponseParser):
            status = self._parser.get_status_code()
            line = b"HTTP/%s %d %s\r\n" % (version, status, self._start)
        else:
            line = b"%s %s HTTP/%s\r\n" % (self._parser.get_method(), self._start, version)
        self._pending.append(line + b"".join(self._headers) + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self._pending.append(b"%x\r\n%s\r\n" % (len(body), body) if self._chunked else body)

    def on_message_complete(self) -> None:
        if self._chunked:
            self._pending.append(b"0\r\n\r\n")
        self._pending.append(END)


async def relay_message(source: trio.abc.Stream, framer: Framer, sink: trio.abc.Stream) -> bool:
    """Forward one message from ``source`` to ``sink``; False if ``source`` closed first."""
    while True:
        data, ended = framer.take()
        if data:
            await sink.send_all(data)
        if ended:
            return True
        chunk = await source.receive_some(RECEIVE_BYTES)
        if not chunk:
            return False
        framer.feed(chunk)


OpenUpstream = Callable[[], Awaitable[trio.abc.Stream]]


async def proxy_connection(open_upstream: OpenUpstream, downstream: trio.abc.Stream) -> None:
    """Requests from ``downstream`` one by one to the upstream, each response back."""
    requests, responses = Framer(response=False), Framer(response=True)
    upstream: trio.abc.Stream | None = None
    try:
        while True:
            data, ended = requests.take()
            if not data:
                chunk = await downstream.receive_some(RECEIVE_BYTES)
                if not chunk:
                    return
                requests.feed(chunk)
                continue
            if upstream is None:
                upstream = await open_upstream()
            await upstream.send_all(data)
            if not ended and not await relay_message(downstream, requests, upstream):
                return
            if not await relay_message(upstream, responses, downstream):
                return
    except (httptools.HttpParserError, trio.BrokenResourceError, ssl.SSLError, OSError):
        return
    finally:
        if upstream is not None:
            await upstream.aclose()
        await downstream.aclose()


def tls_contexts(certs: Path, role: str) -> ssl.SSLContext:
    """TLS 1.3 only, both sides verified against the bench root."""
    purpose = ssl.Purpose.SERVER_AUTH if role == "outbound" else ssl.Purpose.CLIENT_AUTH
    context = ssl.create_default_context(purpose, cafile=str(certs / "ca.pem"))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(str(certs / f"{role}.pem"), str(certs / f"{role}.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def open_mtls(port: int, context: ssl.SSLContext) -> trio.abc.Stream:
    stream = trio.SSLStream(
        await trio.open_tcp_stream("127.0.0.1", port),
        context,
        server_hostname=INBOUND_DNS_NAME,
    )
    await stream.do_handshake()
    return stream


async def open_plain(port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def serve(role: str, listen: int, to: int, certs: Path) -> None:
    context = tls_contexts(certs, role)
    if role == "outbound":
        handler = partial(proxy_connection, partial(open_mtls, to, context))
        await trio.serve_tcp(handler, listen, host="127.0.0.1")
    else:
        handler = partial(proxy_connection, partial(open_plain, to))
        await trio.serve_ssl_over_tcp(handler, listen, context, host="127.0.0.1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triofloor.py", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("outbound", "inbound"))
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--to", type=int, required=True, help="upstream port on 127.0.0.1")
    parser.add_argument("--certs", type=Path, required=True, help="directory of certs.py's files")
    args = parser.parse_args(argv)
    try:
        trio.run(serve, args.role, args.listen, args.to, args.certs)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
