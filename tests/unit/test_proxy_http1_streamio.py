"""The short path for socket I/O: same bytes as trio's, still cancellable, still fair."""

from __future__ import annotations

import trio
import trio.testing

from meshkit.proxy.net.streamio import YIELD_EVERY, receive_some, send_all


def socket_stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    left, right = trio.socket.socketpair()
    return trio.SocketStream(left), trio.SocketStream(right)


async def test_megabytes_cross_intact_in_both_directions() -> None:
    left, right = socket_stream_pair()
    payload = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffers hold
    received = bytearray()

    async def read_all() -> None:
        while len(received) < len(payload):
            received.extend(await receive_some(right, 65536))

    async with left, right, trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await send_all(left, payload)
        await send_all(right, b"back")
        assert await receive_some(left, 100) == b"back"
    assert received == payload


async def test_receive_returns_empty_bytes_when_the_peer_closed() -> None:
    left, right = socket_stream_pair()
    async with left:
        await right.aclose()
        assert await receive_some(left, 100) == b""


async def test_a_cancelled_task_is_cancelled_even_when_data_is_ready() -> None:
    left, right = socket_stream_pair()
    async with left, right:
        await send_all(right, b"ready")
        with trio.CancelScope() as scope:
            scope.cancel()
            await receive_some(left, 100)
        assert scope.cancelled_caught
        assert await receive_some(left, 100) == b"ready"


async def test_a_busy_connection_still_lets_other_tasks_run() -> None:
    left, right = socket_stream_pair()
    ticks = 0

    async def other_task() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with left, right, trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()
        before = ticks
        for _ in range(YIELD_EVERY * 4):
            await send_all(left, b"x")  # never blocks: the buffer has room
        assert ticks - before >= 3
        nursery.cancel_scope.cancel()


async def test_other_streams_take_their_own_path() -> None:
    left, right = trio.testing.memory_stream_pair()
    await send_all(left, b"memory")
    assert await receive_some(right, 100) == b"memory"
