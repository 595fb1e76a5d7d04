"""HTTP/1.1 forwarding is full duplex, through a real sidecar on real sockets (issue 12):
an app that answers before it has read the request body (an early 413) or that
streams its answer while it reads (an echo) works whatever the body's size."""

from __future__ import annotations

from pathlib import Path

import h11
import pytest
import trio

from meshkit.api.control import ControlClient
from meshkit.proxy.sidecar import Sidecar
from tests.unit.test_proxy_harness import StubControlPlane
from tests.unit.test_proxy_sidecar import catalog_config

pytestmark = pytest.mark.e2e

INSTANCE = "catalog-v1-0"
BIG = 16 * 1024 * 1024  # far more than any socket buffer on the way


async def early_413(stream: trio.abc.Stream) -> None:
    """Answers 413 as soon as the head is in, then neither reads nor closes."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive_some(65536)
    await stream.send_all(b"HTTP/1.1 413 Too Big\r\ncontent-length: 8\r\n\r\ntoo big\n")
    await trio.sleep_forever()


async def streaming_echo(stream: trio.abc.Stream) -> None:
    """Echoes each piece of the body as it arrives, as a chunked response."""
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                await stream.send_all(conn.send(h11.Response(status_code=200, headers=[])))
            elif isinstance(event, h11.Data):
                await stream.send_all(conn.send(h11.Data(data=event.data)))
            elif isinstance(event, h11.EndOfMessage):
                await stream.send_all(conn.send(h11.EndOfMessage()))
                return


async def with_sidecar(tmp_path: Path, app: object, work: object) -> None:
    control = StubControlPlane(tmp_path / "control.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(control.serve)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, app, listeners)
        control.publish(INSTANCE, catalog_config(listeners[0].socket.getsockname()[1]))
        sidecar = Sidecar(
            instance=INSTANCE,
            control=ControlClient(socket_path=control.socket_path, instance=INSTANCE),
        )
        # The sidecar shuts down (its connections closed) before the rest goes.
        async with trio.open_nursery() as sidecars:
            await sidecars.start(sidecar.run)
            ports = await control.wait_ready(INSTANCE)
            try:
                with trio.fail_after(30):
                    await work(ports["inbound"])  # type: ignore[operator]
            finally:
                sidecar.shutdown()
        nursery.cancel_scope.cancel()


async def test_an_early_answer_reaches_the_client_while_it_still_uploads(tmp_path: Path) -> None:
    async def work(port: int) -> None:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        head = b"POST /upload HTTP/1.1\r\nHost: catalog\r\nContent-Length: %d\r\n\r\n" % BIG

        async def upload() -> None:
            await client.send_all(head)
            piece = b"x" * 65536
            for _ in range(BIG // len(piece)):
                await client.send_all(piece)

        received = b""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload)
            while not received.endswith(b"too big\n"):
                chunk = await client.receive_some(65536)
                assert chunk, received
                received += chunk
            nursery.cancel_scope.cancel()
        await client.aclose()
        assert received.startswith(b"HTTP/1.1 413 "), received

    await with_sidecar(tmp_path, early_413, work)


async def test_a_streaming_echo_answers_each_piece_before_the_body_ends(tmp_path: Path) -> None:
    async def work(port: int) -> None:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(
            b"POST /echo HTTP/1.1\r\nHost: catalog\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        conn = h11.Connection(h11.CLIENT)
        conn.send(
            h11.Request(
                method="POST",
                target="/echo",
                headers=[("host", "catalog"), ("transfer-encoding", "chunked")],
            )
        )
        echoed = b""
        for number in range(5):
            piece = b"piece %d;" % number
            await client.send_all(b"%x\r\n%s\r\n" % (len(piece), piece))
            while not echoed.endswith(piece):  # ping-pong: the next piece waits for this echo
                data = await client.receive_some(65536)
                assert data, echoed
                conn.receive_data(data)
                while (event := conn.next_event()) is not h11.NEED_DATA:
                    if isinstance(event, h11.Data):
                        echoed += event.data
        await client.send_all(b"0\r\n\r\n")
        await client.aclose()
        assert echoed == b"".join(b"piece %d;" % number for number in range(5))

    await with_sidecar(tmp_path, streaming_echo, work)
