"""H2Downstream (a listener's HTTP/2 streams) and H2Upstreams (multiplexed client
connections) over in-memory streams, plus the pure pieces of h2forward."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from meshkit.proxy.codec.messages import Body, ProtocolRefusal, RequestHead, ResponseHead
from meshkit.proxy.config import AppTarget, Endpoint, Limits
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.downstream import chunked_trailer_section
from meshkit.proxy.flow.exchange import Client
from meshkit.proxy.flow.h2downstream import H2Downstream, serve_http2
from meshkit.proxy.flow.h2forward import sidecar_protocol_from, speaks_http2
from meshkit.proxy.net.h2conn import Http2Connection, Http2Stream, StreamError
from meshkit.proxy.net.h2upstream import H2Upstreams, NoUpstreamNursery
from meshkit.proxy.policy.router import FLAG_HEADER
from meshkit.proxy.telemetry.accesslog import AccessLog

Handler = Callable[[DataPlane, H2Downstream, RequestHead], Awaitable[bool]]


def post(path: bytes = b"/", *headers: tuple[bytes, bytes]) -> RequestHead:
    return RequestHead(method=b"POST", target=path, headers=[(b"host", b"app"), *headers])


async def with_listener(
    handler: Handler,
    client_work: Callable[[Http2Connection], Awaitable[None]],
    *,
    limits: Limits | None = None,
    plane: DataPlane | None = None,
) -> None:
    """``serve_http2`` with ``handler`` on one end of a memory pair, a client on the other."""
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = Http2Connection(client_transport, client_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_http2(
                plane or DataPlane(),
                transport=server_transport,
                client=Client("test", limits or Limits(), "127.0.0.1", None),
                handle_request=handler,
            )
        )
        await nursery.start(client.run)
        await client_work(client)
        await client.aclose()
        nursery.cancel_scope.cancel()


async def read_all(stream: Http2Stream) -> bytes:
    return b"".join([chunk async for chunk in stream.receive_body()])


# ---------------------------------------------------------------- H2Downstream


async def test_a_stream_reads_its_body_and_replies_with_a_flag() -> None:
    async def handler(plane: DataPlane, downstream: H2Downstream, head: RequestHead) -> bool:
        body = b""
        while isinstance(event := await downstream.next_body_event(), Body):
            body += event.data
        assert downstream.request_trailers == [(b"x-sum", b"6")]
        return await downstream.reply(418, b"got " + body, flag="RBAC")

    async def client_work(client: Http2Connection) -> None:
        stream = await client.open_stream(post(b"/tea"), end_stream=False)
        await stream.send_body(b"abc")
        await stream.send_body(b"def")
        await stream.send_trailers([(b"x-sum", b"6")])
        response = await stream.receive_response()
        assert response.status == 418
        assert (FLAG_HEADER, b"RBAC") in response.headers
        assert (b"content-length", b"10") in response.headers
        assert await read_all(stream) == b"got abcdef"

    await with_listener(handler, client_work)


async def test_a_body_over_the_limit_is_refused_with_413() -> None:
    async def handler(plane: DataPlane, downstream: H2Downstream, head: RequestHead) -> bool:
        with pytest.raises(ProtocolRefusal) as refused:
            while True:
                await downstream.next_body_event()
        await downstream.refuse(refused.value.status, refused.value.reason)
        return True

    async def client_work(client: Http2Connection) -> None:
        stream = await client.open_stream(post(), end_stream=False)
        await stream.send_body(b"x" * 100)
        response = await stream.receive_response()
        assert response.status == 413

    await with_listener(handler, client_work, limits=Limits(max_body_bytes=10))


async def test_refusing_after_the_head_was_sent_resets_the_stream() -> None:
    async def handler(plane: DataPlane, downstream: H2Downstream, head: RequestHead) -> bool:
        await downstream.send_response_head(ResponseHead(status=200, headers=[]))
        await downstream.send_response_body(b"partial")
        await downstream.refuse(502, "upstream went away")
        return False

    async def client_work(client: Http2Connection) -> None:
        stream = await client.open_stream(post(), end_stream=True)
        assert (await stream.receive_response()).status == 200
        with pytest.raises(StreamError) as failed:
            await read_all(stream)
        assert failed.value.error_code == ErrorCodes.INTERNAL_ERROR

    await with_listener(handler, client_work)


async def test_a_request_the_client_resets_or_abandons_has_its_access_log_line() -> None:
    lines: list[bytes] = []
    plane = DataPlane()
    plane.access_log = AccessLog(write=lines.append, json_lines=False)
    started: list[bytes] = []

    async def handler(plane: DataPlane, downstream: H2Downstream, head: RequestHead) -> bool:
        started.append(head.target)
        await trio.sleep_forever()
        return True

    async def wait_for(count: int) -> None:
        with trio.fail_after(10):
            while len(started) < count:
                await trio.sleep(0.01)

    async def client_work(client: Http2Connection) -> None:
        stream = await client.open_stream(post(b"/reset-me"), end_stream=True)
        await wait_for(1)
        stream.reset(ErrorCodes.CANCEL)
        await client.open_stream(post(b"/abandoned"), end_stream=True)
        await wait_for(2)
        await client.aclose()
        with trio.fail_after(10):
            while b"/abandoned" not in b"".join(lines):
                await trio.sleep(0.01)
                plane.access_log.flush()

    await with_listener(handler, client_work, plane=plane)
    plane.access_log.flush()
    logged = b"".join(lines)
    assert b" access POST /reset-me 0 " in logged and b"ms DR upstream=-" in logged, logged
    # The second one's connection ended under it: downstream connection termination.
    assert b" access POST /abandoned 0 " in logged and b"ms DC upstream=-" in logged, logged


async def test_a_failing_stream_is_reset_and_its_siblings_still_answered() -> None:
    async def handler(plane: DataPlane, downstream: H2Downstream, head: RequestHead) -> bool:
        if head.target == b"/boom":
            raise RuntimeError("a bug in one request")
        await downstream.send_response_head(ResponseHead(status=200, headers=[]))
        await downstream.end_response([(b"grpc-status", b"0")])
        return True

    async def client_work(client: Http2Connection) -> None:
        boom = await client.open_stream(post(b"/boom"), end_stream=True)
        fine = await client.open_stream(post(b"/fine"), end_stream=True)
        with pytest.raises(StreamError) as failed:
            await boom.receive_response()
        assert failed.value.error_code == ErrorCodes.INTERNAL_ERROR
        assert (await fine.receive_response()).status == 200
        assert await read_all(fine) == b""
        assert fine.trailers == [(b"grpc-status", b"0")]

    await with_listener(handler, client_work)


async def test_a_local_response_without_a_body_ends_the_stream_with_its_head() -> None:
    async def handler(plane: DataPlane, downstream: H2Downstream, head: RequestHead) -> bool:
        return await downstream.send_local_response(ResponseHead(status=204, headers=[]), b"")

    async def client_work(client: Http2Connection) -> None:
        stream = await client.open_stream(post(), end_stream=True)
        assert (await stream.receive_response()).status == 204
        assert await read_all(stream) == b""

    await with_listener(handler, client_work)


# ---------------------------------------------------------------- H2Upstreams


class Peer:
    """In-memory HTTP/2 servers answering ``200 <path>``; counts the connections made."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.connections: list[Http2Connection] = []

    async def connect(self) -> trio.abc.Stream:
        client_transport, server_transport = trio.testing.memory_stream_pair()
        server = Http2Connection(server_transport, client_side=False)
        self.connections.append(server)
        self.nursery.start_soon(self._serve, server)
        return client_transport

    async def _serve(self, server: Http2Connection) -> None:
        async with trio.open_nursery() as streams:
            await streams.start(server.run)
            async for stream in server.accept_streams():
                streams.start_soon(self._answer, stream)

    async def _answer(self, stream: Http2Stream) -> None:
        assert stream.head is not None
        await stream.send_head(ResponseHead(status=200, headers=[]))
        await stream.send_body(stream.head.target, end_stream=True)


async def test_streams_to_one_peer_share_one_connection() -> None:
    upstreams = H2Upstreams()
    async with trio.open_nursery() as nursery:
        await nursery.start(upstreams.run)
        peer = Peer(nursery)
        first, first_reused = await upstreams.open_stream(
            ("peer", 1), post(b"/a"), connect=peer.connect, end_stream=True
        )
        second, second_reused = await upstreams.open_stream(
            ("peer", 1), post(b"/b"), connect=peer.connect, end_stream=True
        )
        assert (first_reused, second_reused) == (False, True)
        assert len(peer.connections) == 1 and upstreams.connection_count(("peer", 1)) == 1
        assert await read_all(first) == b"/a" and await read_all(second) == b"/b"
        for _ in range(50):
            stream, _ = await upstreams.open_stream(
                ("peer", 1), post(b"/more"), connect=peer.connect, end_stream=True
            )
            assert await read_all(stream) == b"/more"
        await trio.testing.wait_all_tasks_blocked()
        # Finished streams are forgotten on both sides: a long-lived connection stays small.
        assert peer.connections[0].tracked_streams == 0
        await upstreams.aclose()
        nursery.cancel_scope.cancel()


async def test_a_connection_that_ended_is_replaced_by_a_fresh_one() -> None:
    upstreams = H2Upstreams()
    async with trio.open_nursery() as nursery:
        await nursery.start(upstreams.run)
        peer = Peer(nursery)
        stream, _ = await upstreams.open_stream(
            ("peer", 1), post(b"/a"), connect=peer.connect, end_stream=True
        )
        assert await read_all(stream) == b"/a"
        await peer.connections[0].aclose()  # the peer sends GOAWAY and closes
        with trio.fail_after(5):
            while upstreams.connection_count(("peer", 1)):
                await trio.sleep(0.01)
        stream, reused = await upstreams.open_stream(
            ("peer", 1), post(b"/b"), connect=peer.connect, end_stream=True
        )
        assert not reused and len(peer.connections) == 2
        assert await read_all(stream) == b"/b"
        await upstreams.aclose()
        nursery.cancel_scope.cancel()


async def test_a_drain_closes_connections_once_their_streams_finish() -> None:
    upstreams = H2Upstreams()
    async with trio.open_nursery() as nursery:
        await nursery.start(upstreams.run)
        peer = Peer(nursery)
        stream, _ = await upstreams.open_stream(
            ("peer", 1), post(b"/a"), connect=peer.connect, end_stream=True
        )
        upstreams.begin_drain()
        assert upstreams.connection_count(("peer", 1)) == 1  # a stream is still in flight
        assert await read_all(stream) == b"/a"
        upstreams.stream_finished()
        with trio.fail_after(5):
            while upstreams.connection_count(("peer", 1)):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_without_an_owner_nursery_no_connection_is_opened() -> None:
    async def connect() -> trio.abc.Stream:
        raise AssertionError("must not connect")

    with pytest.raises(NoUpstreamNursery, match="no owner nursery"):
        await H2Upstreams().open_stream(("peer", 1), post(), connect=connect, end_stream=True)


# ---------------------------------------------------------------- h2forward's pure parts


def test_trailers_become_the_last_chunk_without_forbidden_fields() -> None:
    section = chunked_trailer_section(
        [(b"grpc-status", b"0"), (b"content-length", b"5"), (b"te", b"x"), (b"x-sum", b"9")]
    )
    assert section == b"0\r\ngrpc-status: 0\r\nx-sum: 9\r\n\r\n"


def test_which_exchanges_go_over_http2() -> None:
    endpoint = Endpoint(instance="b-0", host="127.0.0.1", port=1)
    http1_app = AppTarget(host="127.0.0.1", port=2, protocol="http1")
    http2_app = AppTarget(host="127.0.0.1", port=3, protocol="http2")
    plain = post()
    with_te = post(b"/", (b"te", b"trailers"))
    client = object()  # an HTTP/1.1 downstream
    assert speaks_http2(client, http2_app, head=plain)
    assert not speaks_http2(client, http1_app, head=with_te)
    assert not speaks_http2(client, endpoint, head=plain, sidecar_protocol="http1")
    assert speaks_http2(client, endpoint, head=with_te, sidecar_protocol="http1")
    assert speaks_http2(client, endpoint, head=plain, sidecar_protocol="h2")


def test_the_sidecar_protocol_defaults_to_http1() -> None:
    assert sidecar_protocol_from({}) == "http1"
    assert sidecar_protocol_from({"MESHKIT_SIDECAR_PROTOCOL": "H2"}) == "h2"
    assert sidecar_protocol_from({"MESHKIT_SIDECAR_PROTOCOL": "spdy"}) == "http1"
