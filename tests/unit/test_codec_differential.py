"""The fast codecs (llhttp) against the reference ones (h11 + HARDENING.md checks).

Both are fed the same bytes -- valid, hostile, pipelined, split at every byte
boundary -- and must produce the same events, the same refusal status and the
same bytes on the wire; the fast path is allowed to refuse where the reference
accepts, never the reverse.
"""

from __future__ import annotations

import itertools

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshkit.proxy.codec.http1 import Http1ClientCodec, Http1ServerCodec
from meshkit.proxy.codec.http1_fast import FastClientCodec, FastServerCodec
from meshkit.proxy.codec.messages import (
    Body,
    Closed,
    EndOfBody,
    NeedData,
    ProtocolRefusal,
    RequestHead,
    ResponseHead,
)
from meshkit.proxy.config import Limits

LIMITS = Limits(max_header_bytes=2048, max_header_count=12)
Trace = list[object]

# ---------------------------------------------------------------- requests


def serve(codec: Http1ServerCodec, pieces: list[bytes], *, eof: bool) -> Trace:
    """Events of ``pieces`` as a server sees them, answering each request with 200."""
    trace: Trace = []
    body = bytearray()
    answer = b"hi"
    inputs = [*pieces, b""] if eof else list(pieces)
    try:
        for piece in inputs:
            codec.receive_data(piece)
            while True:
                event = codec.next_event()
                if isinstance(event, NeedData):
                    break
                if isinstance(event, Closed):
                    trace.append("closed")
                    return trace
                if isinstance(event, Body):
                    body += event.data
                    continue
                if isinstance(event, RequestHead):
                    trace.append(("head", event, codec.expects_continue))
                    answer = b"" if event.method == b"HEAD" else b"hi"
                    continue
                assert isinstance(event, EndOfBody)
                trace.append(("body", bytes(body)))
                body.clear()
                try:
                    wire = codec.send_head(
                        ResponseHead(status=200, headers=[(b"x-answer", b"1")], reason=b"OK")
                    )
                    wire += codec.send_body(answer) + codec.send_end()
                except h11.LocalProtocolError as error:
                    # CONNECT and Upgrade switch h11 to another protocol; the
                    # fast path hands them to h11, so both fail alike.
                    trace.append(("cannot answer", str(error)))
                    return trace
                trace.append(("wire", wire))
                if not codec.finish_cycle():
                    trace.append("not reusable")
                    return trace
    except ProtocolRefusal as refusal:
        trace.append(("refused", refusal.status))
    if body:
        trace.append(("partial body", bytes(body)))
    return trace


def assert_same_requests(raw: bytes, splits: list[int], *, eof: bool) -> None:
    cuts = sorted({0, len(raw), *(s for s in splits if 0 < s < len(raw))})
    pieces = [raw[a:b] for a, b in itertools.pairwise(cuts)]
    reference = serve(Http1ServerCodec(LIMITS), pieces, eof=eof)
    fast = serve(FastServerCodec(LIMITS), pieces, eof=eof)
    if fast != reference:
        # Allowed: the fast path refuses where the reference went on.
        assert isinstance(fast[-1], tuple) and fast[-1][0] == "refused", (raw, fast, reference)
        assert fast[:-1] == reference[: len(fast) - 1], (raw, fast, reference)


HEADER_LINES = [
    b"Host: svc",
    b"Host: svc:8080",
    b"Host: [::1]:80",
    b"Host: a b",
    b"Host:",
    b"X-A: 1",
    b"X-A:  spaced  ",
    b"X-B: a\tb",
    b"Accept: */*",
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: 5, 5",
    b"Content-Length: +3",
    b"Content-Length: -1",
    b"Content-Length: 0x3",
    b"Content-Length: 99999999999999999999999",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: identity",
    b" folded",
    b"\tfolded",
    b"Bad Name: x",
    b"X-C : y",
    b"X-D: a\rb",
    b"X-E: \x00",
    b"X-F: \x7f",
    b"X-G: caf\xc3\xa9",
    b"\xc3\xa9: 1",
    b"x_forwarded: 1",
    b"Content_Length: 3",
    b"Expect: 100-continue",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: upgrade",
    b"Connection: content-length",
    b"Connection: close, Host",
    b"Connection: TE",
    b"Connection: keep-alive, transfer-encoding",
    b"Connection: x-a",
    b"Upgrade: websocket",
    b"NoColon",
    b": empty-name",
    b'X-H: "quoted"',
]
REQUEST_LINES = [
    b"GET / HTTP/1.1",
    b"GET /a?b=c HTTP/1.1",
    b"POST /upload HTTP/1.1",
    b"HEAD / HTTP/1.1",
    b"GET http://svc/x HTTP/1.1",
    b"GET / HTTP/1.0",
    b"OPTIONS * HTTP/1.1",
    b"CONNECT svc:443 HTTP/1.1",
    b"GET / HTTP/2.0",
    b"GET / HTTP/1.2",
    b"GET / HTTP/0.9",
    b"GET /  HTTP/1.1",
    b"G=T / HTTP/1.1",
    b"get / HTTP/1.1",
    b"GET /a b HTTP/1.1",
    b"GET / HTTP/1.1 ",
    b"GET /\x7f HTTP/1.1",
    b"GET",
]
BODIES = [
    b"",
    b"abc",
    b"abcdef",
    b"3\r\nabc\r\n0\r\n\r\n",
    b"3;ext=1\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\nTrailer: x\r\n\r\n",
    b"zz\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabcd\r\n0\r\n\r\n",
    b"\r\n",
]


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    line_end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    start = draw(st.sampled_from(REQUEST_LINES))
    headers = draw(st.lists(st.sampled_from(HEADER_LINES), max_size=6))
    if draw(st.booleans()):
        headers.insert(0, b"Host: svc")
    head = line_end.join([start, *headers]) + line_end + line_end
    prefix = draw(st.sampled_from([b"", b"", b"\r\n", b"\n"]))
    return prefix + head + draw(st.sampled_from(BODIES))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(request_bytes(), min_size=1, max_size=3),
    splits=st.lists(st.integers(min_value=0, max_value=600), max_size=4),
    eof=st.booleans(),
)
def test_generated_requests_frame_alike(
    requests: list[bytes], splits: list[int], eof: bool
) -> None:
    assert_same_requests(b"".join(requests), splits, eof=eof)


SPLIT_EXAMPLES = [
    b"GET /items HTTP/1.1\r\nHost: catalog\r\nX-A: 1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
    b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    b"\r\nGET / HTTP/1.1\nHost: a\n\nGET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 30\r\n\r\n"
    b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
]


@pytest.mark.parametrize("raw", SPLIT_EXAMPLES)
def test_requests_split_at_every_byte_boundary_frame_alike(raw: bytes) -> None:
    for split in range(len(raw) + 1):
        assert_same_requests(raw, [split], eof=False)
        assert_same_requests(raw, [split, split + 7], eof=True)


def test_byte_by_byte_delivery_frames_alike() -> None:
    for raw in SPLIT_EXAMPLES:
        assert_same_requests(raw, list(range(len(raw))), eof=True)


# ---------------------------------------------------------------- responses


def fetch(codec: Http1ClientCodec, method: bytes, pieces: list[bytes], *, eof: bool) -> Trace:
    """Events of a response in ``pieces`` to a ``method`` request without a body."""
    head = RequestHead(method=method, target=b"/", headers=[(b"host", b"svc")])
    trace: Trace = [("wire", codec.send_head(head) + codec.send_end())]
    body = bytearray()
    inputs = [*pieces, b""] if eof else list(pieces)
    try:
        for piece in inputs:
            codec.receive_data(piece)
            while True:
                event = codec.next_event()
                if isinstance(event, NeedData):
                    break
                if isinstance(event, Closed):
                    trace.append("closed")
                    return trace
                if isinstance(event, Body):
                    body += event.data
                    continue
                if isinstance(event, ResponseHead):
                    trace.append(("head", event.status, event.headers, event.reason))
                    continue
                assert isinstance(event, EndOfBody)
                trace.append(("body", bytes(body)))
                body.clear()
                return trace
    except ProtocolRefusal as refusal:
        trace.append(("refused", refusal.status))
        return trace
    trace.append(("incomplete", bytes(body)))
    return trace


RESPONSE_STARTS = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 ",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 20 OK",
    b"HTTP/2.0 200 OK",
    b"HTTP/1.1 200 OK\x00",
    b"HTTX/1.1 200 OK",
]
RESPONSE_HEADERS = [
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: 3, 3",
    b"Content-Length: 3, 4",
    b"Content-Length: x",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Server: t",
    b"X-A :1",
    b" folded",
    b"Set_Cookie: a",
    b"X-B: a\rb",
]


@st.composite
def response_bytes(draw: st.DrawFn) -> bytes:
    line_end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    start = draw(st.sampled_from(RESPONSE_STARTS))
    headers = draw(st.lists(st.sampled_from(RESPONSE_HEADERS), max_size=4))
    head = line_end.join([start, *headers]) + line_end + line_end
    return head + draw(st.sampled_from(BODIES))


def assert_same_responses(method: bytes, raw: bytes, splits: list[int], *, eof: bool) -> None:
    cuts = sorted({0, len(raw), *(s for s in splits if 0 < s < len(raw))})
    pieces = [raw[a:b] for a, b in itertools.pairwise(cuts)]
    reference = fetch(Http1ClientCodec(LIMITS), method, pieces, eof=eof)
    fast = fetch(FastClientCodec(LIMITS), method, pieces, eof=eof)
    if fast != reference:
        assert isinstance(fast[-1], tuple) and fast[-1][0] == "refused", (raw, fast, reference)
        assert fast[:-1] == reference[: len(fast) - 1], (raw, fast, reference)


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from([b"GET", b"HEAD"]),
    raw=response_bytes(),
    splits=st.lists(st.integers(min_value=0, max_value=300), max_size=4),
    eof=st.booleans(),
)
def test_generated_responses_frame_alike(
    method: bytes, raw: bytes, splits: list[int], eof: bool
) -> None:
    assert_same_responses(method, raw, splits, eof=eof)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nuntil close",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    ],
)
def test_responses_split_at_every_byte_boundary_frame_alike(raw: bytes) -> None:
    for method in (b"GET", b"HEAD"):
        for split in range(len(raw) + 1):
            assert_same_responses(method, raw, [split], eof=True)
            assert_same_responses(method, raw, [split], eof=False)


def test_reusable_after_the_same_exchanges() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    for codec in (Http1ClientCodec(LIMITS), FastClientCodec(LIMITS)):
        for _ in range(3):
            fetch(codec, b"GET", [raw], eof=False)
            assert codec.finish_cycle()
    fast = FastClientCodec(LIMITS)
    fetch(fast, b"GET", [raw + b"junk"], eof=False)
    assert not fast.finish_cycle()  # bytes after a response: never reused


# ---------------------------------------------------------------- Connection lists (issue 12)


@pytest.mark.parametrize(
    "listed",
    [b"content-length", b"Content-Length", b"host", b"close, Host", b"transfer-encoding", b"te"],
)
@pytest.mark.parametrize("codec_class", [Http1ServerCodec, FastServerCodec])
def test_a_connection_list_naming_a_framing_or_routing_header_is_refused(
    listed: bytes, codec_class: type[Http1ServerCodec]
) -> None:
    raw = (
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: " + listed + b"\r\n"
        b"Content-Length: 30\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert serve(codec_class(LIMITS), [raw], eof=False) == [("refused", 400)]


@pytest.mark.parametrize("codec_class", [Http1ClientCodec, FastClientCodec])
def test_the_client_codecs_never_send_a_byte_the_head_does_not_frame(
    codec_class: type[Http1ClientCodec],
) -> None:
    unframed = codec_class(LIMITS)
    unframed.send_head(RequestHead(method=b"POST", target=b"/", headers=[(b"host", b"a")]))
    with pytest.raises(h11.LocalProtocolError):
        unframed.send_body(b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    framed = codec_class(LIMITS)
    head = RequestHead(
        method=b"POST", target=b"/", headers=[(b"host", b"a"), (b"content-length", b"3")]
    )
    framed.send_head(head)
    framed.send_body(b"ab")
    with pytest.raises(h11.LocalProtocolError):
        framed.send_body(b"cd")
    short = codec_class(LIMITS)
    short.send_head(head)
    short.send_body(b"ab")
    with pytest.raises(h11.LocalProtocolError):
        short.send_end()
    assert not short.finish_cycle()
