"""A reused keep-alive connection that turns out dead (issue 12), on real sockets.

The app answers the first request of each connection and closes the
connection on the second without answering, as an app with a short keep-alive
does.  The sidecar must retry such a request on a fresh connection at once,
with the body it already holds, instead of waiting for body bytes the first
try consumed (every other request was ``504 UT`` after the route timeout).
"""

from __future__ import annotations

from pathlib import Path

import h11
import trio

from meshkit.api.control import ControlClient
from meshkit.proxy.sidecar import Sidecar
from tests.unit.test_proxy_harness import Client, StubControlPlane
from tests.unit.test_proxy_sidecar import catalog_config


class ClosesEverySecondRequest:
    """An HTTP/1.1 app that closes its connection, unanswered, on its second request."""

    def __init__(self) -> None:
        self.connections = 0
        self.answered: list[int] = []

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        async with stream:
            for number in (1, 2):
                received = 0
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        conn.receive_data(bytes(data))
                    elif isinstance(event, h11.Data):
                        received += len(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                if number == 2:
                    return  # closed without an answer
                body = str(received).encode()
                self.answered.append(received)
                await stream.send_all(
                    conn.send(
                        h11.Response(status_code=200, headers=[("content-length", str(len(body)))])
                    )
                    + conn.send(h11.Data(data=body))
                    + conn.send(h11.EndOfMessage())
                )
                conn.start_next_cycle()


async def test_a_dead_reused_connection_is_retried_at_once_with_the_body(tmp_path: Path) -> None:
    control = StubControlPlane(tmp_path / "control.sock")
    app = ClosesEverySecondRequest()
    async with trio.open_nursery() as nursery:
        await nursery.start(control.serve)
        app_port = await nursery.start(app.serve)
        control.publish("catalog-v1-0", catalog_config(app_port))
        sidecar = Sidecar(
            instance="catalog-v1-0",
            control=ControlClient(socket_path=control.socket_path, instance="catalog-v1-0"),
        )
        async with trio.open_nursery() as sidecars:
            await sidecars.start(sidecar.run)
            ports = await control.wait_ready("catalog-v1-0")
            client = await Client.connect(ports["inbound"])
            try:
                for size in (0, 10, 0, 5000, 60_000, 3, 0):
                    started = trio.current_time()
                    with trio.fail_after(3):
                        if size:
                            response = await client.request("POST", "/count", body=[b"x" * size])
                        else:
                            response = await client.request("GET", "/info")
                    assert response.status == 200, response.body
                    assert response.body == str(size).encode()
                    assert trio.current_time() - started < 1.0
                    await trio.sleep(0.01)
            finally:
                await client.aclose()
            sidecar.shutdown()
        nursery.cancel_scope.cancel()
    assert app.answered == [0, 10, 0, 5000, 60_000, 3, 0]
