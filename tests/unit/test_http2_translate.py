"""HTTP/1.1 <-> HTTP/2 head translation: examples and hypothesis round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.proxy.codec import translate
from meshkit.proxy.codec.messages import RequestHead, ResponseHead

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).map(
    str.encode
)
value = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_/=;, ", max_size=20).map(
    lambda text: text.strip().encode()
)
regular_name = token.filter(
    lambda name: name not in translate.CONNECTION_SPECIFIC and name not in (b"host", b"te")
)
fields = st.lists(st.tuples(regular_name, value), max_size=8)
paths = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/?=&", max_size=20).map(
    lambda text: b"/" + text.encode()
)


@given(
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]),
    path=paths,
    host=token,
    headers=fields,
)
def test_request_round_trips_through_http2(
    method: bytes, path: bytes, host: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    head = RequestHead(method=method, target=path, headers=[(b"host", host), *headers])
    back, scheme = translate.request_from_h2(translate.request_to_h2(head))
    assert (back.method, back.target, back.headers, scheme) == (method, path, head.headers, b"http")


@given(status=st.integers(min_value=200, max_value=599), headers=fields)
def test_response_round_trips_through_http2(
    status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    back = translate.response_from_h2(
        translate.response_to_h2(ResponseHead(status=status, headers=headers))
    )
    assert (back.status, back.headers) == (status, headers)


@given(trailers=fields)
def test_trailers_round_trip(trailers: list[tuple[bytes, bytes]]) -> None:
    assert translate.trailers_from_h2(translate.trailers_to_h2(trailers)) == trailers


def test_connection_specific_fields_are_dropped_and_te_trailers_kept() -> None:
    head = RequestHead(
        method=b"GET",
        target=b"/",
        headers=[
            (b"host", b"a"),
            (b"connection", b"keep-alive, x-hop"),
            (b"keep-alive", b"5"),
            (b"x-hop", b"1"),
            (b"transfer-encoding", b"chunked"),
            (b"te", b"trailers, deflate"),
            (b"x-kept", b"1"),
        ],
    )
    assert translate.request_to_h2(head) == [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"a"),
        (b":path", b"/"),
        (b"te", b"trailers"),
        (b"x-kept", b"1"),
    ]


def test_absolute_form_target_supplies_scheme_and_authority() -> None:
    head = RequestHead(method=b"GET", target=b"http://catalog/items?x=1", headers=[])
    assert translate.request_to_h2(head)[:4] == [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"catalog"),
        (b":path", b"/items?x=1"),
    ]


def test_response_gets_a_reason_phrase_on_http1() -> None:
    assert translate.response_from_h2([(b":status", b"404")]).reason == b"Not Found"


@pytest.mark.parametrize(
    "fields",
    [
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"Upper", b"x")],
        [(b":method", b"GET"), (b":scheme", b"http")],
        [(b":method", b"GET"), (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")],
        [(b":method", b"GET"), (b"x", b"1"), (b":scheme", b"http"), (b":path", b"/")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":status", b"200")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"x", b"a\r\nb")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"upgrade", b"h2c")],
    ],
)
def test_malformed_requests_are_refused(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(translate.MalformedMessage):
        translate.request_from_h2(fields)


def test_pseudo_headers_in_trailers_are_refused() -> None:
    with pytest.raises(translate.MalformedMessage):
        translate.trailers_from_h2([(b":status", b"200")])
