"""Every test of ``test_proxy_http1`` again, with the fast (llhttp) codecs.

The tests below are the reference module's own, collected here a second time;
the autouse fixture swaps the codec classes they construct.
"""

from __future__ import annotations

import pytest

from meshkit.proxy.codec import http1_fast
from meshkit.proxy.codec.http1 import Http1ClientCodec, Http1ServerCodec
from meshkit.proxy.codec.http1_fast import FastClientCodec, FastServerCodec, serialise_head
from meshkit.proxy.codec.messages import Body, EndOfBody, RequestHead, ResponseHead
from meshkit.proxy.config import Limits
from tests.unit import test_proxy_http1 as reference
from tests.unit.test_proxy_http1 import *  # noqa: F403  (the tests to run again)


@pytest.fixture(autouse=True)
def _fast_codecs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference, "Http1ServerCodec", FastServerCodec)
    monkeypatch.setattr(reference, "Http1ClientCodec", FastClientCodec)


def test_the_env_var_selects_the_reference_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(http1_fast.new_server_codec(Limits())) is FastServerCodec
    assert type(http1_fast.new_client_codec(Limits())) is FastClientCodec
    monkeypatch.setenv(http1_fast.CODEC_ENV, "h11")
    assert type(http1_fast.new_server_codec(Limits())) is Http1ServerCodec
    assert type(http1_fast.new_client_codec(Limits())) is Http1ClientCodec


def test_outgoing_heads_never_carry_a_line_break_or_nul() -> None:
    assert serialise_head(b"GET / HTTP/1.1", [(b"host", b"a")]) == (
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"
    )
    for bad in (b"a\r\nx-injected: 1", b"a\n", b"a\r", b"a\0"):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            serialise_head(b"GET / HTTP/1.1", [(b"host", bad)])


def test_a_content_length_body_is_cut_at_its_length_and_the_rest_is_the_next_request() -> None:
    codec = FastServerCodec(Limits())
    codec.receive_data(
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    head = codec.next_event()
    assert isinstance(head, RequestHead) and head.target == b"/a"
    assert codec.next_event() == Body(data=b"abc")
    assert codec.next_event() == EndOfBody()
    codec.send_head(ResponseHead(status=200, headers=[(b"content-length", b"0")]))
    codec.send_end()
    assert codec.finish_cycle()
    second = codec.next_event()
    assert isinstance(second, RequestHead) and second.target == b"/b"
