"""The per-listener bound on requests in flight covers HTTP/1.1 too (issue 12), on real sockets.

``max_streams_per_listener`` bounds what one listener serves at once across
its connections; an HTTP/1.1 request counts as one stream while it is served
(an idle keep-alive connection counts nothing).  Over the bound a request is
refused at once with ``503 UO``, naming the limit, and the connection closed.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import trio

from meshkit.api.control import ControlClient
from meshkit.proxy.config import Limits
from meshkit.proxy.sidecar import Sidecar
from tests.unit.test_proxy_harness import Backend, Client, StubControlPlane, one_request
from tests.unit.test_proxy_sidecar import catalog_config


async def test_http1_requests_over_the_listener_bound_are_refused(tmp_path: Path) -> None:
    control = StubControlPlane(tmp_path / "control.sock")
    app = Backend("catalog")
    async with trio.open_nursery() as nursery:
        await nursery.start(control.serve)
        app_port = await nursery.start(app.serve)
        config = attrs.evolve(catalog_config(app_port), limits=Limits(max_streams_per_listener=2))
        control.publish("catalog-v1-0", config)
        sidecar = Sidecar(
            instance="catalog-v1-0",
            control=ControlClient(socket_path=control.socket_path, instance="catalog-v1-0"),
        )
        async with trio.open_nursery() as sidecars:
            await sidecars.start(sidecar.run)
            port = (await control.wait_ready("catalog-v1-0"))["inbound"]
            statuses: list[int] = []

            async def slow() -> None:
                response = await one_request(port, "GET", "/slow?seconds=3")
                statuses.append(response.status)

            with trio.fail_after(60):
                async with trio.open_nursery() as requests:
                    requests.start_soon(slow)
                    requests.start_soon(slow)
                    while sidecar.plane.admission("inbound").total < 2:
                        await trio.sleep(0.01)
                    refused = await one_request(port, "GET", "/info")
                    assert refused.status == 503, refused.body
                    assert refused.header("x-meshkit-flag") == "UO"
                    assert b"max_streams_per_listener" in refused.body
                assert statuses == [200, 200]
                # The bound is for requests in flight: once they end, the listener serves again,
                # and an idle keep-alive connection holds nothing.
                idle = await Client.connect(port)
                try:
                    assert (await idle.request("GET", "/info")).status == 200
                    assert sidecar.plane.admission("inbound").total == 0
                    assert (await one_request(port, "GET", "/info")).status == 200
                finally:
                    await idle.aclose()
            sidecar.shutdown()
        nursery.cancel_scope.cancel()
