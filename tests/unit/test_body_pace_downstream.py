"""A request body that stalls or trickles is refused with 408 by either downstream, on the
autojump clock; once the response streams, only the idle timeout applies (issue 12)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshkit.proxy.codec.messages import ClientRefusal, EndOfBody, RequestHead, ResponseHead
from meshkit.proxy.config import Limits
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.downstream import Http1Downstream
from meshkit.proxy.flow.exchange import Client, DownstreamGone
from meshkit.proxy.flow.h2downstream import H2Downstream, serve_http2
from meshkit.proxy.net.h2conn import Http2Connection

LIMITS = Limits(body_timeout=10.0, min_body_rate=100.0, idle_timeout=60.0)
HEAD = b"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100000\r\n\r\n"


async def read_body(downstream: Http1Downstream | H2Downstream) -> None:
    while not isinstance(await downstream.next_body_event(), EndOfBody):
        pass


def http1(stream: trio.abc.Stream) -> Http1Downstream:
    return Http1Downstream(
        stream=stream,
        plane=DataPlane(),
        client=Client("inbound", LIMITS, "127.0.0.1", None),
    )


async def test_a_stalled_http1_body_is_408_after_the_body_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    downstream = http1(server)
    await client.send_all(HEAD + b"x" * 5000)
    assert await downstream.read_head(first=True) is not None
    started = trio.current_time()
    with pytest.raises(ClientRefusal) as refused:
        await read_body(downstream)
    assert refused.value.status == 408
    assert "stalled: nothing received for 10s" in refused.value.reason
    assert trio.current_time() - started == 10.0


async def test_a_trickling_http1_body_is_408_once_its_allowance_is_spent(
    autojump_clock: trio.abc.Clock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    downstream = http1(server)
    await client.send_all(HEAD)
    assert await downstream.read_head(first=True) is not None

    async def trickle() -> None:
        while True:
            await trio.sleep(1)
            await client.send_all(b"x")  # 1 byte/s, where 100 bytes/s are asked

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        with pytest.raises(ClientRefusal) as refused:
            await read_body(downstream)
        nursery.cancel_scope.cancel()
    assert "too slow" in refused.value.reason
    # 10 s, plus a second per 100 bytes: about 10.1 s of waiting in all.
    assert 10 <= trio.current_time() - started <= 12


async def test_each_keep_alive_request_gets_a_fresh_pace(autojump_clock: trio.abc.Clock) -> None:
    client, server = trio.testing.memory_stream_pair()
    downstream = http1(server)
    small = b"POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\n"
    for _ in range(3):
        await client.send_all(small + b"x")
        assert await downstream.read_head(first=True) is not None

        async def finish() -> None:
            await trio.sleep(9)  # under the 10 s stall bound, every time
            await client.send_all(b"y")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(finish)
            await read_body(downstream)
        await downstream.send_whole_response(ResponseHead(status=200, headers=[]), b"")
        assert downstream.codec.finish_cycle()


async def test_once_the_response_streams_only_the_idle_timeout_applies(
    autojump_clock: trio.abc.Clock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    downstream = http1(server)
    await client.send_all(HEAD)
    assert await downstream.read_head(first=True) is not None
    await downstream.send_response_head(ResponseHead(status=200, headers=[]))
    started = trio.current_time()
    with pytest.raises(DownstreamGone):
        await read_body(downstream)
    assert trio.current_time() - started == 60.0


async def test_a_stalled_http2_body_is_answered_408(autojump_clock: trio.abc.Clock) -> None:
    async def handler(plane: DataPlane, downstream: H2Downstream, head: RequestHead) -> bool:
        try:
            await read_body(downstream)
        except ClientRefusal as refusal:
            await downstream.refuse(refusal.status, refusal.reason)
        return False

    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = Http2Connection(client_transport, client_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_http2(
                DataPlane(),
                transport=server_transport,
                client=Client("inbound", LIMITS, "127.0.0.1", None),
                handle_request=handler,
            )
        )
        await nursery.start(client.run)
        head = RequestHead(method=b"POST", target=b"/upload", headers=[(b"host", b"app")])
        stream = await client.open_stream(head, end_stream=False)
        await stream.send_body(b"x" * 10)
        started = trio.current_time()
        response = await stream.receive_response()
        assert response.status == 408
        assert trio.current_time() - started == 10.0
        nursery.cancel_scope.cancel()
