"""What a listener's HTTP/2 streams may cost: a reset stream costs nothing more, and
the streams in flight are bounded across connections (rapid reset, issue 12)."""

from __future__ import annotations

import trio
import trio.testing
from h2.errors import ErrorCodes

from meshkit.proxy.codec.messages import RequestHead, ResponseHead
from meshkit.proxy.config import Limits
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.exchange import Client
from meshkit.proxy.flow.h2downstream import H2Downstream, serve_http2
from meshkit.proxy.net.h2conn import Http2Connection, StreamError


def get(path: bytes) -> RequestHead:
    return RequestHead(method=b"GET", target=path, headers=[(b"host", b"app")])


class Listener:
    """``serve_http2`` for every client connection made with ``connect``, one DataPlane."""

    def __init__(self, nursery: trio.Nursery, limits: Limits) -> None:
        self.plane = DataPlane()
        self.nursery = nursery
        self.limits = limits
        self.started: list[bytes] = []
        self.cancelled: list[bytes] = []
        self.release = trio.Event()

    async def handler(self, plane: DataPlane, downstream: H2Downstream, head: RequestHead) -> bool:
        self.started.append(head.target)
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled.append(head.target)
            raise
        await downstream.send_response_head(ResponseHead(status=200, headers=[]), end_stream=True)
        return True

    async def connect(self) -> Http2Connection:
        client_transport, server_transport = trio.testing.memory_stream_pair()
        self.nursery.start_soon(
            lambda: serve_http2(
                self.plane,
                transport=server_transport,
                client=Client("test", self.limits, "127.0.0.1", None),
                handle_request=self.handler,
            )
        )
        client = Http2Connection(client_transport, client_side=True)
        await self.nursery.start(client.run)
        return client


async def test_a_reset_cancels_the_work_of_its_stream(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        listener = Listener(nursery, Limits())
        client = await listener.connect()
        stream = await client.open_stream(get(b"/slow"), end_stream=True)
        await trio.sleep(1)
        assert listener.started == [b"/slow"]
        stream.reset(ErrorCodes.CANCEL)
        await trio.sleep(1)
        assert listener.cancelled == [b"/slow"]
        assert listener.plane.stream_admission["test"].total == 0
        nursery.cancel_scope.cancel()


async def test_streams_over_the_listener_bound_are_refused_on_any_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        listener = Listener(nursery, Limits(max_streams_per_listener=8))
        first, second = await listener.connect(), await listener.connect()
        refused: list[bytes] = []

        async def request(client: Http2Connection, path: bytes) -> None:
            stream = await client.open_stream(get(path), end_stream=True)
            try:
                await stream.receive_response()
            except StreamError as error:
                assert error.error_code == ErrorCodes.REFUSED_STREAM
                refused.append(path)

        async with trio.open_nursery() as requests:
            for number in range(6):
                requests.start_soon(request, first, b"/first/%d" % number)
            await trio.sleep(1)
            # One connection holds at most half the listener: 4 of its 6 are served.
            assert len(listener.started) == 4 and len(refused) == 2
            for number in range(6):
                requests.start_soon(request, second, b"/second/%d" % number)
            await trio.sleep(1)
            # The second gets 8 // 3 = 2: its share were a third to come.
            assert len(listener.started) == 6 and len(refused) == 6
            listener.release.set()
        assert listener.plane.stream_admission["test"].total == 0
        nursery.cancel_scope.cancel()
