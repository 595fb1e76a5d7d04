"""Two Http2Connections joined in memory: streaming, flow control, trailers, floods."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from meshkit.proxy.codec.messages import RequestHead, ResponseHead
from meshkit.proxy.net.h2conn import Http2Connection, Http2Stream, StreamError

WINDOW = 65_535
Handler = Callable[[Http2Stream], Awaitable[None]]


async def serve(connection: Http2Connection, handler: Handler) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        async for stream in connection.accept_streams():
            nursery.start_soon(handler, stream)


async def with_pair(
    handler: Handler, client_work: Callable[[Http2Connection], Awaitable[None]]
) -> Http2Connection:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    server = Http2Connection(server_transport, client_side=False)
    client = Http2Connection(client_transport, client_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, server, handler)
        await nursery.start(client.run)
        await client_work(client)
        await client.aclose()
    return server


def get(path: bytes = b"/", *headers: tuple[bytes, bytes]) -> RequestHead:
    return RequestHead(method=b"GET", target=path, headers=[(b"host", b"shop"), *headers])


async def test_get_returns_the_response_body() -> None:
    async def handler(stream: Http2Stream) -> None:
        assert stream.head is not None and stream.head.target == b"/items"
        await stream.send_head(ResponseHead(status=200, headers=[(b"content-type", b"text/plain")]))
        await stream.send_body(b"hello ")
        await stream.send_body(b"world")
        await stream.end()

    async def client_work(client: Http2Connection) -> None:
        stream = await client.open_stream(get(b"/items"), end_stream=True)
        response = await stream.receive_response()
        assert response.status == 200 and response.http_version == b"2"
        assert b"".join([chunk async for chunk in stream.receive_body()]) == b"hello world"

    await with_pair(handler, client_work)


async def test_large_post_to_a_slow_reader_never_buffers_more_than_a_window(
    autojump_clock: trio.abc.Clock,
) -> None:
    size = 20 * 1024 * 1024
    servers: list[Http2Stream] = []

    async def handler(stream: Http2Stream) -> None:
        servers.append(stream)
        received = 0
        while chunk := await stream.receive_chunk():
            received += len(chunk)
            await trio.sleep(0.01)  # a slow consumer
        await stream.send_head(ResponseHead(status=200, headers=[]))
        await stream.send_body(b"%d" % received)
        await stream.end()

    async def client_work(client: Http2Connection) -> None:
        head = RequestHead(method=b"POST", target=b"/upload", headers=[(b"host", b"shop")])
        stream = await client.open_stream(head)
        block = b"x" * (256 * 1024)
        for _ in range(size // len(block)):
            await stream.send_body(block)
        await stream.end()
        await stream.receive_response()
        assert b"".join([chunk async for chunk in stream.receive_body()]) == b"%d" % size
        # The sender never queued more than the peer's window (plus frame headers).
        assert client.peak_queued_bytes <= WINDOW + 1024

    await with_pair(handler, client_work)
    assert 0 < servers[0].peak_buffered_bytes <= WINDOW


async def test_trailers_cross_both_ways() -> None:
    async def handler(stream: Http2Stream) -> None:
        body = b"".join([chunk async for chunk in stream.receive_body()])
        assert body == b"request" and stream.trailers == [(b"x-checksum", b"abc")]
        await stream.send_head(
            ResponseHead(status=200, headers=[(b"content-type", b"application/grpc")])
        )
        await stream.send_body(b"reply")
        await stream.send_trailers([(b"grpc-status", b"0"), (b"grpc-message", b"ok")])

    async def client_work(client: Http2Connection) -> None:
        head = RequestHead(
            method=b"POST", target=b"/svc/Call", headers=[(b"host", b"g"), (b"te", b"trailers")]
        )
        stream = await client.open_stream(head)
        await stream.send_body(b"request")
        await stream.send_trailers([(b"x-checksum", b"abc")])
        await stream.receive_response()
        assert b"".join([chunk async for chunk in stream.receive_body()]) == b"reply"
        assert stream.trailers == [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]

    await with_pair(handler, client_work)


async def test_a_reset_reaches_the_other_side_as_a_stream_error() -> None:
    seen: list[int] = []

    async def handler(stream: Http2Stream) -> None:
        try:
            await stream.receive_chunk()
        except StreamError as error:
            seen.append(error.error_code)

    async def client_work(client: Http2Connection) -> None:
        stream = await client.open_stream(get())
        stream.reset(ErrorCodes.CANCEL)
        with pytest.raises(StreamError):
            await stream.send_body(b"late")
        await trio.testing.wait_all_tasks_blocked()

    await with_pair(handler, client_work)
    assert seen == [ErrorCodes.CANCEL]


async def test_goaway_on_close_names_the_last_stream() -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    server = Http2Connection(server_transport, client_side=False)
    client = Http2Connection(client_transport, client_side=True)

    async def handler(stream: Http2Stream) -> None:
        await stream.send_head(ResponseHead(status=204, headers=[]), end_stream=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, server, handler)
        await nursery.start(client.run)
        for _ in range(3):
            stream = await client.open_stream(get(), end_stream=True)
            assert (await stream.receive_response()).status == 204
        await server.aclose()
        await trio.testing.wait_all_tasks_blocked()
    assert client.ended is not None and client.ended.by_peer
    assert client.ended.last_stream_id == 5


async def test_ping_flood_from_a_peer_that_never_reads_is_disconnected(
    autojump_clock: trio.abc.Clock,
) -> None:
    attacker_transport, server_transport = trio.testing.lockstep_stream_pair()
    server = Http2Connection(server_transport, client_side=False)
    attacker = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    attacker.initiate_connection()

    async def flood() -> None:
        with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
            await attacker_transport.send_all(attacker.data_to_send())
            for round_ in range(5000):
                attacker.ping(round_.to_bytes(8, "big"))
                await attacker_transport.send_all(attacker.data_to_send())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        nursery.start_soon(flood)
    assert server.codec.flooded
    assert server.ended is not None and server.ended.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    await attacker_transport.aclose()
