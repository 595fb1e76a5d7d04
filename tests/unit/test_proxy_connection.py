"""One downstream connection driven through memory streams, under the autojump clock:
header timeout (408), idle keep-alive timeout, drain, refusals and local replies."""

from __future__ import annotations

import trio
import trio.testing

from meshkit.proxy.config import Cluster, Limits, Listener, ProxyConfig
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.net.server import handle_connection

CONFIG = ProxyConfig(
    version=1,
    mesh="shop",
    instance="frontend-0",
    service="frontend",
    listeners=(Listener(name="outbound", kind="outbound"), Listener(name="admin", kind="admin")),
    clusters=(Cluster(name="reviews"),),
    limits=Limits(header_timeout=10.0, idle_timeout=60.0),
)


def ready_plane() -> DataPlane:
    plane = DataPlane()
    plane.apply(CONFIG)
    plane.ready = True
    plane.admin_token = "t"
    return plane


async def read_until_closed(stream: trio.abc.ReceiveStream) -> bytes:
    received = bytearray()
    while chunk := await stream.receive_some(65536):
        received += chunk
    return bytes(received)


async def read_one_response(stream: trio.abc.ReceiveStream) -> bytes:
    received = bytearray()
    while b"\r\n\r\n" not in received:
        received += await stream.receive_some(65536)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        ).split(b":")[1]
    )
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head + b"\r\n\r\n" + body


async def test_a_slow_head_gets_408_after_the_header_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    plane = ready_plane()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_connection, plane, "outbound", server)
        await client.send_all(b"GET http://reviews/ HTTP/1.1\r\nHo")
        started = trio.current_time()
        answer = await read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"not received within 10s" in answer
    assert trio.current_time() - started == 10.0


async def test_a_silent_new_connection_also_gets_408(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_connection, ready_plane(), "outbound", server)
        assert (await read_until_closed(client)).startswith(b"HTTP/1.1 408 ")


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_connection, ready_plane(), "admin", server)
        await client.send_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\r\n\r\n")
        answer = await read_one_response(client)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ready\n")
        started = trio.current_time()
        assert await read_until_closed(client) == b""
    assert trio.current_time() - started == 60.0


async def test_draining_closes_idle_connections_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    plane = ready_plane()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_connection, plane, "admin", server)
        await client.send_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\r\n\r\n")
        await read_one_response(client)
        await trio.sleep(1)
        started = trio.current_time()
        plane.begin_drain()
        assert await read_until_closed(client) == b""
    assert trio.current_time() == started


async def test_local_replies_keep_the_connection_and_drain_a_small_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_connection, ready_plane(), "outbound", server)
        await client.send_all(
            b"POST http://reviews/ HTTP/1.1\r\nHost: reviews\r\nContent-Length: 5\r\n\r\nhello"
        )
        first = await read_one_response(client)
        assert first.startswith(b"HTTP/1.1 503 ")
        assert b"x-meshkit-flag: UH" in first and b"connection: close" not in first
        await client.send_all(
            b"GET http://nosuch/ HTTP/1.1\r\nHost: nosuch\r\nConnection: close\r\n\r\n"
        )
        second = await read_until_closed(client)
        assert second.startswith(b"HTTP/1.1 404 ")
        assert b"no service named 'nosuch' in mesh 'shop'" in second


async def test_an_oversized_header_block_is_431_and_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_connection, ready_plane(), "outbound", server)
        await client.send_all(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * (61 * 1024) + b"\r\n\r\n"
        )
        answer = await read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_an_unknown_listener_name_closes_the_connection() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle_connection, ready_plane(), "removed", server)
        assert await read_until_closed(client) == b""
