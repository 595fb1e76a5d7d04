"""The HTTP/1.1 codecs, fed raw bytes: HARDENING.md's table, framing and pipelining."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.proxy.codec.http1 import Http1ClientCodec, Http1ServerCodec, refusal_bytes
from meshkit.proxy.codec.messages import (
    Body,
    Closed,
    EndOfBody,
    NeedData,
    ProtocolRefusal,
    RequestEvent,
    RequestHead,
    ResponseHead,
)
from meshkit.proxy.codec.request_rules import MESH_HEADER_ALLOWANCE
from meshkit.proxy.config import Limits

LIMITS = Limits()


def events(raw: bytes, limits: Limits = LIMITS, *, eof: bool = False) -> list[RequestEvent]:
    codec = Http1ServerCodec(limits)
    codec.receive_data(raw)
    if eof:
        codec.receive_data(b"")
    result: list[RequestEvent] = []
    while True:
        event = codec.next_event()
        result.append(event)
        if isinstance(event, NeedData | Closed | EndOfBody):
            return result


def refusal(raw: bytes, limits: Limits = LIMITS) -> ProtocolRefusal:
    with pytest.raises(ProtocolRefusal) as caught:
        events(raw, limits)
    return caught.value


def test_a_plain_request_is_a_head_then_the_end() -> None:
    head, end = events(b"GET /items HTTP/1.1\r\nHost: catalog\r\nX-A: 1\r\n\r\n")
    assert head == RequestHead(
        method=b"GET", target=b"/items", headers=[(b"host", b"catalog"), (b"x-a", b"1")]
    )
    assert end == EndOfBody()


def test_bare_lf_line_endings_are_accepted() -> None:
    head, _ = events(b"GET / HTTP/1.1\nHost: a\n\n")
    assert isinstance(head, RequestHead)


def test_content_length_body_is_delivered() -> None:
    _, body, end = events(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    assert body == Body(data=b"hello")
    assert end == EndOfBody()


def test_a_head_arriving_in_pieces_waits_for_the_blank_line() -> None:
    codec = Http1ServerCodec(LIMITS)
    for piece in (b"GET / HT", b"TP/1.1\r\nHo", b"st: a\r\n", b"\r\n"):
        assert codec.next_event() == NeedData()
        codec.receive_data(piece)
    assert isinstance(codec.next_event(), RequestHead)


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            400,
            "conflicting Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n",
            400,
            "conflicting Content-Length",
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "not a number"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "single Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
            "single Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            501,
            "single Transfer-Encoding",
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", 400, "obs-fold"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n", 400, "obs-fold"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace before the colon"),
        (b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, "whitespace before the colon"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", 400, "bare CR"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400, "without a colon"),
        (b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, "missing Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "malformed Host"),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "malformed Host"),
        (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request"),
        (b"GET / HTTP/2.7\r\nHost: a\r\n\r\n", 505, "malformed request"),
    ],
)
def test_hostile_heads_are_refused(raw: bytes, status: int, words: str) -> None:
    refused = refusal(raw)
    assert refused.status == status
    assert words in refused.reason


def test_a_header_block_over_the_byte_limit_is_431_even_before_it_ends() -> None:
    limits = Limits(max_header_bytes=1024)
    # Unfinished, it may still hold the mesh's own fields: the allowance is left for them.
    unfinished = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * (2000 + MESH_HEADER_ALLOWANCE)
    assert refusal(unfinished, limits).status == 431
    complete = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 1100 + b"\r\n\r\n"
    assert refusal(complete, limits).status == 431


def test_more_headers_than_the_count_limit_is_431() -> None:
    lines = b"".join(b"X-%d: 1\r\n" % i for i in range(100))
    assert refusal(b"GET / HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n").status == 431
    lines = b"".join(b"X-%d: 1\r\n" % i for i in range(99))
    assert isinstance(events(b"GET / HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n")[0], RequestHead)


def test_a_declared_body_over_the_limit_is_413() -> None:
    limits = Limits(max_body_bytes=10)
    assert (
        refusal(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", limits).status == 413
    )


def test_header_names_with_underscores_are_dropped_never_aliased() -> None:
    head, *_ = events(b"GET / HTTP/1.1\r\nHost: a\r\nContent_Length: 50\r\nX_User: root\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert head.headers == [(b"host", b"a")]


def test_chunked_body_is_delivered_in_pieces() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    codec = Http1ServerCodec(LIMITS)
    codec.receive_data(raw)
    seen = [codec.next_event() for _ in range(4)]
    assert seen[1:] == [Body(data=b"abc"), Body(data=b"de"), EndOfBody()]


def test_pipelined_requests_each_have_their_head_checked() -> None:
    codec = Http1ServerCodec(LIMITS)
    codec.receive_data(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n"
    )
    head = codec.next_event()
    assert isinstance(head, RequestHead) and head.target == b"/one"
    assert codec.next_event() == EndOfBody()
    codec.send_head(ResponseHead(status=200, headers=[(b"content-length", b"0")]))
    codec.send_end()
    assert codec.finish_cycle()
    with pytest.raises(ProtocolRefusal, match="obs-fold"):
        codec.next_event()


def test_keep_alive_cycle_then_clean_close() -> None:
    codec = Http1ServerCodec(LIMITS)
    codec.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(codec.next_event(), RequestHead)
    assert codec.next_event() == EndOfBody()
    out = codec.send_head(ResponseHead(status=204, headers=[])) + codec.send_end()
    assert out.startswith(b"HTTP/1.1 204 ")
    assert codec.finish_cycle()
    assert codec.reading_head
    codec.receive_data(b"")
    assert codec.next_event() == Closed()


def test_connection_close_request_is_not_reusable() -> None:
    codec = Http1ServerCodec(LIMITS)
    codec.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    codec.next_event()
    codec.next_event()
    codec.send_head(ResponseHead(status=200, headers=[(b"content-length", b"0")]))
    codec.send_end()
    assert not codec.finish_cycle()


def test_eof_in_the_middle_of_a_head_is_400() -> None:
    with pytest.raises(ProtocolRefusal) as caught:
        events(b"GET / HTTP/1.1\r\nHost:", eof=True)
    assert caught.value.status == 400


def test_leading_empty_lines_before_the_request_line_are_ignored() -> None:
    head, _ = events(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(head, RequestHead)


def test_refusal_bytes_are_a_complete_closing_response() -> None:
    raw = refusal_bytes(431, "too many headers", flag="X")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in head and b"x-meshkit-flag: X" in head
    assert b"content-length: %d" % len(body) in head
    assert body == b"too many headers\n"


def test_client_codec_reads_a_response_and_skips_100_continue() -> None:
    codec = Http1ClientCodec(LIMITS)
    codec.send_head(RequestHead(method=b"GET", target=b"/", headers=[(b"host", b"a")]))
    codec.send_end()
    codec.receive_data(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX_Y: 1\r\n\r\nok"
    )
    head = codec.next_event()
    assert isinstance(head, ResponseHead) and head.status == 200
    assert head.headers == [(b"content-length", b"2"), (b"x_y", b"1")]  # only requests are cleaned
    assert codec.next_event() == Body(data=b"ok")
    assert codec.next_event() == EndOfBody()
    assert codec.finish_cycle()


def test_client_codec_turns_a_malformed_response_into_502() -> None:
    codec = Http1ClientCodec(LIMITS)
    codec.send_head(RequestHead(method=b"GET", target=b"/", headers=[(b"host", b"a")]))
    codec.send_end()
    codec.receive_data(b"HTTP/1.1 twohundred OK\r\n\r\n")
    with pytest.raises(ProtocolRefusal) as caught:
        codec.next_event()
    assert caught.value.status == 502


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_any_bytes_yield_events_or_a_refusal_never_a_crash(raw: bytes, split: int) -> None:
    codec = Http1ServerCodec(Limits(max_header_bytes=256, max_header_count=8))
    for start in range(0, len(raw), split):
        codec.receive_data(raw[start : start + split])
    codec.receive_data(b"")
    try:
        for _ in range(100):
            event = codec.next_event()
            if isinstance(event, NeedData | Closed | EndOfBody):
                break
    except ProtocolRefusal as refused:
        assert 400 <= refused.status < 600


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(rb"\A[a-z][a-z0-9-]{0,15}\Z"),
            st.from_regex(rb"\A[!-~]{1,20}\Z"),
        ),
        max_size=10,
    )
)
def test_well_formed_headers_pass_unchanged(headers: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (n, v) for n, v in headers if n not in (b"host", b"content-length", b"transfer-encoding")
    ]
    raw = (
        b"GET / HTTP/1.1\r\nhost: a\r\n"
        + b"".join(n + b": " + v + b"\r\n" for n, v in headers)
        + b"\r\n"
    )
    head = events(raw)[0]
    assert isinstance(head, RequestHead)
    assert head.headers == [(b"host", b"a"), *headers]


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "body", [b"0\r\nX-T: 1\n\r\n", b"0\r\nX-T: 1\r\n\n", b"0\r\n\n", b"3\r\nabc\r\n0\r\nX-T: 1\n\n"]
)
def test_a_bare_lf_in_a_chunked_trailer_section_is_400(body: bytes) -> None:
    refused = refusal(CHUNKED_HEAD + body)
    assert refused.status == 400 and "trailer line ends with a bare LF" in refused.reason


def test_trailers_and_lf_in_chunk_data_are_fine_however_the_bytes_arrive() -> None:
    raw = CHUNKED_HEAD + b"5\r\nab\ncd\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"
    for size in (1, 3, len(raw)):
        codec = Http1ServerCodec(LIMITS)
        data, seen = b"", []
        for start in range(0, len(raw), size):
            codec.receive_data(raw[start : start + size])
            while not isinstance(event := codec.next_event(), NeedData):
                seen.append(event)
                if isinstance(event, EndOfBody):
                    break
            if seen and isinstance(seen[-1], EndOfBody):
                break
        data = b"".join(event.data for event in seen if isinstance(event, Body))
        assert data == b"ab\ncd" and isinstance(seen[-1], EndOfBody), size


def test_the_mesh_fields_bytes_do_not_count_against_the_byte_limit() -> None:
    limits = Limits(max_header_bytes=1024)
    mine = b"GET / HTTP/1.1\r\nHost: a\r\nX-Mine: " + b"m" * 940
    assert len(mine) <= 1024
    xfcc = b"\r\nx-forwarded-client-cert: By=spiffe://a;URI=spiffe://b" + b"c" * 300
    head, _ = events(mine + xfcc + b"\r\n\r\n", limits)
    assert isinstance(head, RequestHead)
    assert refusal(mine + b"m" * 100 + xfcc + b"\r\n\r\n", limits).status == 431
    # The allowance is bounded: the mesh's names cannot carry a head past it.
    huge = b"\r\nx-forwarded-for: " + b"1" * (MESH_HEADER_ALLOWANCE + 100)
    assert refusal(mine + huge + b"\r\n\r\n", limits).status == 431
