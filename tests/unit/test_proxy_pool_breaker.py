"""The breaker's ``max_connections`` in the connection pools (``pool``, ``h2upstream``, ``forward``).

Fake connects hand out in-memory streams; a ``CircuitBreaker`` counts the
connection tickets, so each test reads ``in_use("connections")`` after a
close path.  Time is the autojump clock where idle expiry matters.
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from meshkit.api import BreakerLimits, DestinationPolicy, RetryRule, RouteRule, RouteTable
from meshkit.proxy.codec.messages import EndOfBody, RequestHead
from meshkit.proxy.config import Cluster, Endpoint, Limits, ProxyConfig
from meshkit.proxy.flow.attempt import Outcome
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.downstream import Http1Downstream
from meshkit.proxy.flow.exchange import Client
from meshkit.proxy.flow.forward import forward
from meshkit.proxy.flow.pipeline import Result, route_to_service
from meshkit.proxy.flow.replay import ReplayableBody, RequestBodySource
from meshkit.proxy.net.h2upstream import H2Upstreams
from meshkit.proxy.net.pool import ConnectionPool, UpstreamConnection
from meshkit.proxy.net.transport import ConnectFailure
from meshkit.proxy.policy.breaker import CircuitBreaker, ConnectionLimitReached
from meshkit.proxy.policy.destinations import Destinations

A = ("127.0.0.1", 1)
B = ("127.0.0.1", 2)
LIMITS = Limits()
GET = RequestHead(method=b"GET", target=b"/", headers=[(b"host", b"catalog")])


class FakeConnect:
    """Counts connects; each hands out one end of an in-memory stream pair."""

    def __init__(self, *, fail: bool = False) -> None:
        self.count = 0
        self.fail = fail
        self.peers: list[trio.abc.Stream] = []

    async def __call__(self) -> trio.abc.Stream:
        self.count += 1
        if self.fail:
            raise ConnectFailure("connection refused")
        ours, theirs = trio.testing.memory_stream_pair()
        self.peers.append(theirs)
        return ours


def breaker_of(max_connections: int) -> CircuitBreaker:
    return CircuitBreaker(BreakerLimits(max_connections=max_connections), service="catalog")


def new_pool(max_idle_per_key: int = 4, max_idle_age: float = 30.0) -> ConnectionPool:
    return ConnectionPool(max_idle_per_key=max_idle_per_key, max_idle_age=max_idle_age)


def complete_exchange(connection: UpstreamConnection) -> None:
    """Run one whole request/response through the codec, so the connection is reusable."""
    codec = connection.codec
    codec.send_head(GET)
    codec.send_end()
    codec.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    while not isinstance(codec.next_event(), EndOfBody):
        pass


async def acquire(
    pool: ConnectionPool, key: tuple[str, int], connect: FakeConnect, breaker: CircuitBreaker
) -> UpstreamConnection:
    return await pool.acquire(
        key, limits=LIMITS, connect=connect, open_ticket=breaker.try_open_connection
    )


async def test_a_ticket_per_new_connection_and_none_for_a_reused_one() -> None:
    pool, connect, breaker = new_pool(), FakeConnect(), breaker_of(2)
    first = await acquire(pool, A, connect, breaker)
    assert (connect.count, breaker.in_use("connections")) == (1, 1)
    complete_exchange(first)
    await pool.release(first)
    assert breaker.in_use("connections") == 1  # an idle connection keeps its ticket
    again = await acquire(pool, A, connect, breaker)
    assert again is first and again.reused
    assert (connect.count, breaker.in_use("connections")) == (1, 1)
    second = await acquire(pool, A, connect, breaker)
    assert (connect.count, breaker.in_use("connections")) == (2, 2)
    await pool.discard(again)
    await pool.discard(second)
    assert breaker.in_use("connections") == 0


async def test_a_refused_ticket_raises_before_connecting() -> None:
    pool, connect, breaker = new_pool(), FakeConnect(), breaker_of(1)
    held = await acquire(pool, A, connect, breaker)
    with pytest.raises(ConnectionLimitReached):
        await acquire(pool, A, connect, breaker)
    assert (connect.count, breaker.in_use("connections")) == (1, 1)
    await pool.discard(held)
    assert breaker.in_use("connections") == 0


async def test_every_close_path_gives_the_ticket_back(autojump_clock: trio.abc.Clock) -> None:
    pool, connect, breaker = (
        new_pool(max_idle_per_key=1, max_idle_age=5.0),
        FakeConnect(),
        breaker_of(9),
    )
    # Released mid-exchange (not reusable): closed.
    unfinished = await acquire(pool, A, connect, breaker)
    await pool.release(unfinished)
    assert breaker.in_use("connections") == 0
    # One idle connection too many for the key: the older one is closed.
    one, two = await acquire(pool, A, connect, breaker), await acquire(pool, A, connect, breaker)
    complete_exchange(one)
    complete_exchange(two)
    await pool.release(one)
    await pool.release(two)
    assert (pool.idle_count(A), breaker.in_use("connections")) == (1, 1)
    # Idle past max_idle_age: closed on the next acquire, a new one takes the ticket.
    await trio.sleep(6)
    fresh = await acquire(pool, A, connect, breaker)
    assert not fresh.reused and breaker.in_use("connections") == 1
    # Pool closed: idle ones closed now, the one in use when it comes back.
    other = await acquire(pool, B, connect, breaker)
    complete_exchange(other)
    await pool.release(other)
    assert breaker.in_use("connections") == 2
    await pool.aclose()
    assert breaker.in_use("connections") == 1
    complete_exchange(fresh)
    await pool.release(fresh)
    assert breaker.in_use("connections") == 0


async def test_a_failed_or_cancelled_connect_gives_the_ticket_back() -> None:
    pool, breaker = new_pool(), breaker_of(1)
    with pytest.raises(ConnectFailure):
        await acquire(pool, A, FakeConnect(fail=True), breaker)
    assert breaker.in_use("connections") == 0

    async def never() -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with trio.move_on_after(0.01):
        await pool.acquire(A, limits=LIMITS, connect=never, open_ticket=breaker.try_open_connection)
    assert breaker.in_use("connections") == 0


async def test_an_idle_connection_to_another_instance_yields_its_ticket() -> None:
    pool, connect, breaker = new_pool(), FakeConnect(), breaker_of(1)
    to_a = await acquire(pool, A, connect, breaker)
    complete_exchange(to_a)
    await pool.release(to_a)
    to_b = await acquire(pool, B, connect, breaker)
    assert pool.idle_count(A) == 0 and breaker.in_use("connections") == 1
    with pytest.raises(ConnectionLimitReached):  # in use, not idle: nothing to free
        await acquire(pool, A, connect, breaker)
    await pool.discard(to_b)
    assert breaker.in_use("connections") == 0


async def test_without_a_ticket_source_nothing_is_counted() -> None:
    pool, connect = new_pool(), FakeConnect()
    connection = await pool.acquire(A, limits=LIMITS, connect=connect)
    assert connection.ticket is None
    await pool.discard(connection)


async def test_h2_connection_holds_its_ticket_until_it_ends() -> None:
    upstreams, connect, breaker = H2Upstreams(), FakeConnect(), breaker_of(1)
    async with trio.open_nursery() as nursery:
        await nursery.start(upstreams.run)
        with pytest.raises(ConnectFailure):
            await upstreams.open_stream(
                A,
                GET,
                connect=FakeConnect(fail=True),
                end_stream=True,
                open_ticket=breaker.try_open_connection,
            )
        assert breaker.in_use("connections") == 0
        await upstreams.open_stream(
            A, GET, connect=connect, end_stream=True, open_ticket=breaker.try_open_connection
        )
        assert (upstreams.connection_count(A), breaker.in_use("connections")) == (1, 1)
        with pytest.raises(ConnectionLimitReached):
            await upstreams.open_stream(
                B, GET, connect=connect, end_stream=True, open_ticket=breaker.try_open_connection
            )
        assert connect.count == 1
        await connect.peers[0].aclose()  # the peer goes away: the connection's task ends
        with trio.fail_after(1):
            while upstreams.connection_count(A):
                await trio.sleep(0.001)
        assert breaker.in_use("connections") == 0
        await upstreams.aclose()
        nursery.cancel_scope.cancel()


async def test_forward_answers_uo_without_connecting_when_no_ticket_is_left() -> None:
    plane = DataPlane()
    plane.destinations.state("catalog").breaker.update_limits(BreakerLimits(max_connections=0))
    ours, _theirs = trio.testing.memory_stream_pair()
    downstream = Http1Downstream(
        stream=ours,
        plane=plane,
        client=Client("outbound", LIMITS, None, None),
    )
    outcome = await forward(
        plane=plane,
        downstream=downstream,
        head=GET,
        target=b"/",
        destination=Endpoint(instance="cat-1", host="127.0.0.1", port=1),
        cluster_name="catalog",
        limits=LIMITS,
        append_forwarded_for=False,
        answer_failures=False,
    )
    assert (outcome.status, outcome.flag, outcome.answered) == (0, "UO", False)
    assert "max_connections=0" in outcome.reason
    assert plane.pool.idle_count(("127.0.0.1", 1)) == 0


async def test_the_pipeline_answers_an_attempt_without_a_connection_503_uo_at_once() -> None:
    endpoints = tuple(Endpoint(instance=f"cat-{n}", host="127.0.0.1", port=n) for n in (1, 2))
    cluster = Cluster(name="catalog", endpoints=endpoints)
    config = ProxyConfig(
        version=1,
        mesh="m",
        instance="web-1",
        service="web",
        clusters=(cluster,),
        routes=(RouteTable(service="catalog", rules=(RouteRule(retry=RetryRule(attempts=3)),)),),
        policies=(DestinationPolicy(service="catalog"),),
    )
    destinations = Destinations(
        clock=trio.current_time, wall_clock=lambda: 1000.0, random=random.Random(1)
    )
    tried: list[str] = []
    replies: list[tuple[int, str, str]] = []

    async def attempt(
        endpoint: Endpoint, head: RequestHead, body: RequestBodySource | None, hook: object
    ) -> Outcome:
        tried.append(endpoint.instance)
        reason = "circuit breaker open for 'catalog': 1 connections in use (max_connections=1)"
        return Outcome(status=0, flag="UO", keep_alive=True, answered=False, reason=reason)

    async def reply(status: int, flag: str, reason: str, **_: object) -> bool:
        replies.append((status, flag, reason))
        return True

    async def read_body() -> ReplayableBody:
        return ReplayableBody(chunks=[], complete=True, live=None)  # type: ignore[arg-type]

    result = await route_to_service(
        destinations=destinations,
        config=config,
        cluster=cluster,
        head=GET,
        target=b"/",
        attempt=attempt,
        reply=reply,
        read_body=read_body,
    )
    assert result == Result(status=503, flag="UO", keep_alive=True)
    assert tried == ["cat-1"] or tried == ["cat-2"]  # no retry on another instance
    assert "max_connections=1" in replies[0][2]
    assert destinations.state("catalog").outlier.ejected() == set()


async def test_a_mirror_copy_over_the_connection_limit_is_dropped_without_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from meshkit.proxy.flow import mirror
    from meshkit.proxy.flow.mirror import Mirrors

    connects: list[Endpoint] = []

    async def connect_endpoint(endpoint: Endpoint, **_: object) -> trio.abc.Stream:
        connects.append(endpoint)
        raise ConnectFailure("must not be called")

    monkeypatch.setattr(mirror, "connect_endpoint", connect_endpoint)
    breaker = breaker_of(0)
    mirrors = Mirrors()
    pool = new_pool()
    endpoint = Endpoint(instance="catalog-v2-0", host="127.0.0.1", port=1, version="v2")
    async with trio.open_nursery() as nursery:
        await nursery.start(mirrors.run)
        assert mirrors.offer(
            pool=pool,
            tls=None,
            endpoint=endpoint,
            head=GET,
            body=b"",
            limits=LIMITS,
            open_ticket=breaker.try_open_connection,
        )
        with trio.fail_after(1):
            while mirrors.in_flight:
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert (mirrors.in_flight, mirrors.sent, connects) == (0, 0, [])
    assert breaker.in_use("connections") == 0
    assert pool.idle_count((endpoint.host, endpoint.port)) == 0
