"""A stalled or trickling request body through a real sidecar on real sockets: the client
gets 408 after the (here short) body timeout and the app's connection is released."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
import trio

from meshkit.api.control import ControlClient
from meshkit.proxy.config import AppTarget, Cluster, Limits, Listener, ProxyConfig
from meshkit.proxy.sidecar import Sidecar
from tests.unit.test_proxy_harness import StubControlPlane

pytestmark = pytest.mark.e2e

INSTANCE = "upload-0"
LIMITS = Limits(body_timeout=1.0, min_body_rate=200.0)


class HoldingApp:
    """Reads whatever arrives and never answers; ``released`` counts connections closed."""

    def __init__(self) -> None:
        self.received = 0
        self.released = 0
        self.changed = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        async with stream:
            try:
                while data := await stream.receive_some(65536):
                    self.received += len(data)
            except trio.BrokenResourceError:
                pass
        self.released += 1
        self.changed.set()
        self.changed = trio.Event()

    async def wait_released(self, count: int) -> None:
        while self.released < count:
            await self.changed.wait()


@asynccontextmanager
async def sidecar_for(tmp_path: Path, app_port: int) -> AsyncIterator[int]:
    """A sidecar in front of the app at ``app_port``; its inbound port.  The sidecar has
    shut down (its connections closed) before the stub control plane goes."""
    control = StubControlPlane(tmp_path / "control.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(control.serve)
        control.publish(
            INSTANCE,
            ProxyConfig(
                version=1,
                mesh="shop",
                instance=INSTANCE,
                service="upload",
                app=AppTarget(port=app_port),
                listeners=(Listener(name="inbound", kind="inbound"),),
                clusters=(Cluster(name="upload"),),
                limits=LIMITS,
                mtls="permissive",
            ),
        )
        sidecar = Sidecar(
            instance=INSTANCE,
            control=ControlClient(socket_path=control.socket_path, instance=INSTANCE),
        )
        async with trio.open_nursery() as sidecars:
            await sidecars.start(sidecar.run)
            ports = await control.wait_ready(INSTANCE)
            try:
                yield ports["inbound"]
            finally:
                sidecar.shutdown()
        nursery.cancel_scope.cancel()


async def _read_all(stream: trio.SocketStream) -> bytes:
    received = b""
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


async def test_http1_stall_and_trickle_are_408_and_release_the_app(tmp_path: Path) -> None:
    app = HoldingApp()
    async with trio.open_nursery() as nursery:
        app_port = await nursery.start(app.serve)
        async with sidecar_for(tmp_path, app_port) as port:
            head = b"POST /upload HTTP/1.1\r\nHost: upload\r\nContent-Length: 100000\r\n\r\n"
            with trio.fail_after(20):
                stalled = await trio.open_tcp_stream("127.0.0.1", port)
                await stalled.send_all(head + b"x" * 1000)
                answer = await _read_all(stalled)
                await stalled.aclose()
                assert answer.startswith(b"HTTP/1.1 408 "), answer
                assert b"request body stalled: nothing received for 1s" in answer
                await app.wait_released(1)

                trickling = await trio.open_tcp_stream("127.0.0.1", port)
                await trickling.send_all(head)

                async def trickle() -> None:
                    while True:
                        await trio.sleep(0.1)
                        await trickling.send_all(b"x")  # 10 bytes/s, where 200 are asked

                async with trio.open_nursery() as trickler:
                    trickler.start_soon(trickle)
                    answer = await _read_all(trickling)
                    trickler.cancel_scope.cancel()
                await trickling.aclose()
                assert answer.startswith(b"HTTP/1.1 408 ") and b"too slow" in answer, answer
                await app.wait_released(2)
        nursery.cancel_scope.cancel()


async def test_http2_stalled_body_is_408_and_releases_the_app(tmp_path: Path) -> None:
    app = HoldingApp()
    async with trio.open_nursery() as nursery:
        app_port = await nursery.start(app.serve)
        async with sidecar_for(tmp_path, app_port) as port:
            client = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding=None)
            )
            client.initiate_connection()
            fields = [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"upload"),
                (b":path", b"/upload"),
            ]
            client.send_headers(1, fields)
            client.send_data(1, b"x" * 1000)
            status = None
            with trio.fail_after(20):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(client.data_to_send())
                while status is None:
                    data = await stream.receive_some(65536)
                    assert data, "the sidecar closed the connection without an answer"
                    for event in client.receive_data(data):
                        if isinstance(event, h2.events.ResponseReceived):
                            status = dict(event.headers)[b":status"]
                    await stream.send_all(client.data_to_send())
                assert status == b"408"
                await app.wait_released(1)
                await stream.aclose()
        nursery.cancel_scope.cancel()
