"""The head rules shared by both HTTP/1.1 codecs, and the hop-by-hop rules (issue 12)."""

from __future__ import annotations

from meshkit.proxy.codec import translate
from meshkit.proxy.codec.headers import rewrite_response_headers, strip_hop_by_hop


def test_a_connection_list_never_removes_a_framing_or_routing_header() -> None:
    headers = [
        (b"host", b"a"),
        (b"content-length", b"3"),
        (b"connection", b"Content-Length, Host, x-drop"),
        (b"x-drop", b"1"),
        (b"x-keep", b"1"),
    ]
    kept = [(b"host", b"a"), (b"content-length", b"3"), (b"x-keep", b"1")]
    assert strip_hop_by_hop(headers) == kept
    assert rewrite_response_headers(headers) == kept
    assert translate.connection_free(headers) == kept


def test_te_trailers_survives_a_connection_list_naming_te() -> None:
    headers = [(b"te", b"trailers"), (b"connection", b"te")]
    assert translate.connection_free(headers) == [(b"te", b"trailers")]
