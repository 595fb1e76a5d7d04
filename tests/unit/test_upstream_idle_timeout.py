"""An endpoint silent after the request: the idle timeout answers ``504 UT`` unless an
enclosing deadline (the route's timeout, a per-try timeout) comes first, which then cuts
the wait on its own, at its own time; on the autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshkit.proxy.codec.http1_fast import new_client_codec
from meshkit.proxy.codec.messages import RequestHead, ResponseHead
from meshkit.proxy.config import Limits
from meshkit.proxy.flow.h1forward import _receive_from, _UpstreamBroken

LIMITS = Limits(idle_timeout=60.0)


class Upstream:
    """What ``_receive_from`` uses of a pooled connection: its stream and its codec."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.codec = new_client_codec(LIMITS)


async def test_a_silent_endpoint_times_out_after_the_idle_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    _client, server = trio.testing.memory_stream_pair()
    started = trio.current_time()
    with pytest.raises(_UpstreamBroken) as broken:
        await _receive_from(Upstream(server), LIMITS, got_head=False)  # type: ignore[arg-type]
    assert broken.value.timed_out and broken.value.before_response
    assert "sent nothing for 60s" in broken.value.reason
    assert trio.current_time() - started == 60.0


async def test_an_earlier_enclosing_deadline_cuts_the_wait_itself(
    autojump_clock: trio.abc.Clock,
) -> None:
    _client, server = trio.testing.memory_stream_pair()
    started = trio.current_time()
    with trio.move_on_after(15) as route:
        await _receive_from(Upstream(server), LIMITS, got_head=False)  # type: ignore[arg-type]
    assert route.cancelled_caught
    assert trio.current_time() - started == 15.0


async def test_a_later_enclosing_deadline_leaves_the_idle_timeout_first(
    autojump_clock: trio.abc.Clock,
) -> None:
    _client, server = trio.testing.memory_stream_pair()
    with trio.move_on_after(90) as route:
        with pytest.raises(_UpstreamBroken) as broken:
            await _receive_from(Upstream(server), LIMITS, got_head=True)  # type: ignore[arg-type]
    assert not route.cancelled_caught
    assert broken.value.timed_out and not broken.value.before_response


async def test_bytes_that_come_go_to_the_codec(autojump_clock: trio.abc.Clock) -> None:
    client, server = trio.testing.memory_stream_pair()
    upstream = Upstream(server)
    upstream.codec.send_head(RequestHead(method=b"GET", target=b"/", headers=[(b"host", b"a")]))
    await client.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    with trio.move_on_after(15):
        await _receive_from(upstream, LIMITS, got_head=False)  # type: ignore[arg-type]
    event = upstream.codec.next_event()
    assert isinstance(event, ResponseHead) and event.status == 200
