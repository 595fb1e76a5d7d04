"""The per-request L7 flow (``meshkit.proxy.flow.pipeline``) with in-memory endpoints.

Each fake endpoint is a script of behaviours (a status, a connect failure, a
hang); replies are recorded instead of sent; time is the autojump clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio

from meshkit.api import (
    BreakerLimits,
    DestinationPolicy,
    DirectResponse,
    FaultRule,
    Forward,
    HeaderOps,
    MirrorRule,
    OutlierSettings,
    Redirect,
    RequestMatch,
    RetryRule,
    RouteRule,
    RouteTable,
    RuntimeFault,
    WeightedVersion,
)
from meshkit.proxy.codec.messages import Headers, RequestHead, ResponseHead
from meshkit.proxy.config import Cluster, Endpoint, ProxyConfig
from meshkit.proxy.flow.attempt import Outcome, request_has_body
from meshkit.proxy.flow.pipeline import ResponseHook, Result, route_to_service
from meshkit.proxy.flow.replay import ReplayableBody, RequestBodySource
from meshkit.proxy.policy.destinations import Destinations

ENDPOINTS = (
    Endpoint(instance="cat-1", host="127.0.0.1", port=1, version="v1"),
    Endpoint(instance="cat-2", host="127.0.0.1", port=2, version="v1"),
    Endpoint(instance="cat-3", host="127.0.0.1", port=3, version="v2"),
)
CLUSTER = Cluster(name="catalog", endpoints=ENDPOINTS)

Behaviour = Callable[[], Any]


@attrs.define
class Reply:
    status: int
    flag: str
    reason: str
    extra: Headers
    body: bytes | None


@attrs.define
class FakeMesh:
    """Endpoints answering from per-instance scripts; the default answer is 200."""

    scripts: dict[str, list[Any]] = attrs.field(factory=dict)
    sent: list[tuple[str, RequestHead]] = attrs.field(factory=list)
    delivered: list[ResponseHead] = attrs.field(factory=list)
    replies: list[Reply] = attrs.field(factory=list)
    mirrored: list[tuple[str, bytes]] = attrs.field(factory=list)

    async def attempt(
        self,
        endpoint: Endpoint,
        head: RequestHead,
        body: RequestBodySource | None,
        on_response: ResponseHook,
    ) -> Outcome:
        self.sent.append((endpoint.instance, head))
        script = self.scripts.get(endpoint.instance, [])
        step = script.pop(0) if len(script) > 1 else (script[0] if script else 200)
        if step == "connect-failure":
            return Outcome(status=0, flag="UF", keep_alive=True, answered=False, reason="refused")
        if step == "hang":
            await trio.sleep_forever()
        if isinstance(step, tuple):
            await trio.sleep(step[0])
            step = step[1]
        chosen = on_response(ResponseHead(status=step, headers=[(b"x-from", b"app")]))
        if chosen is None:
            return Outcome(status=step, flag="-", keep_alive=True, answered=False)
        self.delivered.append(chosen)
        return Outcome(status=step, flag="-", keep_alive=True)

    async def reply(
        self,
        status: int,
        flag: str,
        reason: str,
        *,
        extra: Headers | None = None,
        body: bytes | None = None,
    ) -> bool:
        self.replies.append(Reply(status, flag, reason, extra or [], body))
        return True

    def mirror(self, endpoint: Endpoint, head: RequestHead, body: bytes) -> bool:
        self.mirrored.append((endpoint.instance, body))
        return True


def config_with(
    *rules: RouteRule, policy: DestinationPolicy | None = None, **extra: Any
) -> ProxyConfig:
    return ProxyConfig(
        version=1,
        mesh="m",
        instance="web-1",
        service="web",
        clusters=(CLUSTER,),
        routes=(RouteTable(service="catalog", rules=rules),) if rules else (),
        policies=(policy,) if policy else (),
        **extra,
    )


def new_destinations(seed: int = 7) -> Destinations:
    return Destinations(
        clock=trio.current_time, wall_clock=lambda: 1000.0, random=random.Random(seed)
    )


async def run(
    mesh: FakeMesh,
    config: ProxyConfig,
    destinations: Destinations | None = None,
    *,
    method: bytes = b"GET",
    target: bytes = b"/items",
    headers: Headers | None = None,
    body: bytes = b"",
) -> Result:
    async def read_body() -> ReplayableBody:
        return ReplayableBody(chunks=[body] if body else [], complete=True, live=None)  # type: ignore[arg-type]

    return await route_to_service(
        destinations=destinations or new_destinations(),
        config=config,
        cluster=CLUSTER,
        head=RequestHead(method=method, target=target, headers=headers or [(b"host", b"catalog")]),
        target=target,
        attempt=mesh.attempt,
        reply=mesh.reply,
        read_body=read_body,
        mirror=mesh.mirror,
    )


RETRY = RetryRule(attempts=2, retry_on=("5xx", "connect-failure"))


async def test_without_a_route_table_every_version_gets_requests_round_robin() -> None:
    mesh, destinations = FakeMesh(), new_destinations()
    for _ in range(3):
        result = await run(mesh, config_with(), destinations)
        assert result == Result(status=200, flag="-", keep_alive=True)
    assert sorted(instance for instance, _ in mesh.sent) == ["cat-1", "cat-2", "cat-3"]


async def test_no_matching_rule_is_404_nr() -> None:
    mesh = FakeMesh()
    rule = RouteRule(match=RequestMatch(path_kind="prefix", path="/api"))
    result = await run(mesh, config_with(rule), target=b"/other")
    assert (result.status, result.flag) == (404, "NR")
    assert "no route rule of 'catalog' matches GET /other" in mesh.replies[0].reason
    assert not mesh.sent


async def test_direct_response_and_redirect_are_answered_locally() -> None:
    mesh = FakeMesh()
    direct = RouteRule(
        match=RequestMatch(path_kind="exact", path="/teapot"),
        action=DirectResponse(status=418, body="short and stout"),
    )
    redirect = RouteRule(
        match=RequestMatch(path_kind="prefix", path="/old"),
        action=Redirect(path="/new", status=302),
    )
    config = config_with(direct, redirect)
    assert (await run(mesh, config, target=b"/teapot")).status == 418
    assert mesh.replies[0].body == b"short and stout"
    assert (await run(mesh, config, target=b"/old?q=1")).status == 302
    assert mesh.replies[1].extra == [(b"location", b"http://catalog/new?q=1")]
    assert not mesh.sent


async def test_weighted_split_and_rewrite_and_header_ops() -> None:
    mesh, destinations = FakeMesh(), new_destinations(seed=1)
    rule = RouteRule(
        match=RequestMatch(path_kind="prefix", path="/api/"),
        action=Forward(
            versions=(
                WeightedVersion(version="v1", weight=80),
                WeightedVersion(version="v2", weight=20),
            ),
            rewrite_prefix="/",
        ),
        request_headers=HeaderOps(set=(("x-route", "api"),)),
        response_headers=HeaderOps(add=(("x-served-by", "mesh"),)),
    )
    for _ in range(1000):
        await run(mesh, config_with(rule), destinations, target=b"/api/items?a=1")
    v2 = sum(1 for instance, _ in mesh.sent if instance == "cat-3")
    assert 150 <= v2 <= 250
    head = mesh.sent[0][1]
    assert head.target == b"/items?a=1"
    assert (b"x-route", b"api") in head.headers
    assert (b"x-served-by", b"mesh") in mesh.delivered[0].headers


async def test_a_version_without_instances_is_503_uh() -> None:
    mesh = FakeMesh()
    rule = RouteRule(action=Forward(versions=(WeightedVersion(version="v9"),)))
    result = await run(mesh, config_with(rule))
    assert (result.status, result.flag) == (503, "UH")
    assert "version 'v9' of 'catalog'" in mesh.replies[0].reason


async def test_breaker_overflow_is_an_immediate_503_uo(autojump_clock: trio.abc.Clock) -> None:
    mesh = FakeMesh(scripts={name: [(10.0, 200)] for name in ("cat-1", "cat-2", "cat-3")})
    policy = DestinationPolicy(service="catalog", breaker=BreakerLimits(max_requests=1))
    config, destinations = config_with(policy=policy), new_destinations()
    results: list[Result] = []

    async def one() -> None:
        results.append(await run(mesh, config, destinations))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        await trio.sleep(1)
        started = trio.current_time()
        second = await run(mesh, config, destinations)
        assert trio.current_time() == started
    assert (second.status, second.flag) == (503, "UO")
    assert "max_requests=1" in mesh.replies[0].reason
    assert results[0].status == 200
    assert destinations.state("catalog").breaker.in_use("requests") == 0


async def test_faults_delay_abort_and_grpc_abort(autojump_clock: trio.abc.Clock) -> None:
    mesh = FakeMesh()
    delayed = RouteRule(
        match=RequestMatch(path_kind="exact", path="/slow"),
        fault=FaultRule(delay=2.0, delay_percent=100),
    )
    aborted = RouteRule(
        match=RequestMatch(path_kind="exact", path="/broken"),
        fault=FaultRule(abort_status=418, abort_percent=100),
    )
    grpc = RouteRule(fault=FaultRule(abort_grpc="unavailable", abort_percent=100))
    config = config_with(delayed, aborted, grpc)
    started = trio.current_time()
    result = await run(mesh, config, target=b"/slow")
    assert trio.current_time() - started == pytest.approx(2.0)
    assert (result.status, result.flag) == (200, "DI")
    result = await run(mesh, config, target=b"/broken")
    assert (result.status, result.flag) == (418, "FI")
    result = await run(mesh, config, target=b"/pkg.Svc/Call")
    assert (result.status, result.flag) == (200, "FI")
    assert (b"grpc-status", b"14") in mesh.replies[-1].extra
    assert (b"content-type", b"application/grpc") in mesh.replies[-1].extra
    assert len(mesh.sent) == 1


async def test_runtime_faults_apply_until_they_expire() -> None:
    mesh = FakeMesh()
    fault = FaultRule(abort_status=503, abort_percent=100)
    live = RuntimeFault(service="catalog", fault=fault, expires_at=2000.0)
    expired = RuntimeFault(service="catalog", fault=fault, expires_at=10.0)
    assert (await run(mesh, config_with(runtime_faults=(live,)))).flag == "FI"
    assert (await run(mesh, config_with(runtime_faults=(expired,)))).status == 200


async def test_a_5xx_is_retried_on_another_instance_and_never_half_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    mesh = FakeMesh(scripts={"cat-1": [503], "cat-2": [503], "cat-3": [503]})
    mesh.scripts["cat-2"] = [200]
    rule = RouteRule(action=Forward(versions=(WeightedVersion(version="v1"),)), retry=RETRY)
    result = await run(mesh, config_with(rule))
    assert result == Result(status=200, flag="-", keep_alive=True)
    assert [instance for instance, _ in mesh.sent] == ["cat-1", "cat-2"]
    assert [head.status for head in mesh.delivered] == [200]


async def test_exhausted_retries_return_the_last_answer_with_urx(
    autojump_clock: trio.abc.Clock,
) -> None:
    mesh = FakeMesh(scripts={name: [503] for name in ("cat-1", "cat-2", "cat-3")})
    result = await run(mesh, config_with(RouteRule(retry=RETRY)))
    assert (result.status, result.flag) == (503, "URX")
    assert len(mesh.sent) == 3
    assert [head.status for head in mesh.delivered] == [503]
    assert not mesh.replies


async def test_non_idempotent_requests_are_not_retried() -> None:
    mesh = FakeMesh(scripts={name: [503] for name in ("cat-1", "cat-2", "cat-3")})
    result = await run(mesh, config_with(RouteRule(retry=RETRY)), method=b"POST", body=b"x")
    assert result.status == 503
    assert len(mesh.sent) == 1


async def test_connect_failure_is_uf_or_retried(autojump_clock: trio.abc.Clock) -> None:
    scripts = {
        "cat-1": ["connect-failure"],
        "cat-2": ["connect-failure"],
        "cat-3": ["connect-failure"],
    }
    mesh = FakeMesh(scripts=dict(scripts))
    result = await run(mesh, config_with())
    assert (result.status, result.flag) == (503, "UF")
    mesh = FakeMesh(scripts=dict(scripts) | {"cat-2": [200]})
    v1 = Forward(versions=(WeightedVersion(version="v1"),))
    result = await run(mesh, config_with(RouteRule(action=v1, retry=RETRY)))
    assert result.status == 200
    mesh = FakeMesh(scripts=dict(scripts))
    result = await run(mesh, config_with(RouteRule(retry=RETRY)))
    assert (result.status, result.flag) == (503, "UF,URX")


async def test_route_timeout_is_504_ut(autojump_clock: trio.abc.Clock) -> None:
    mesh = FakeMesh(scripts={name: ["hang"] for name in ("cat-1", "cat-2", "cat-3")})
    started = trio.current_time()
    result = await run(mesh, config_with(RouteRule(timeout=3.0)))
    assert (result.status, result.flag) == (504, "UT")
    assert trio.current_time() - started == pytest.approx(3.0)
    assert "within 3s" in mesh.replies[0].reason


async def test_per_try_timeout_then_a_retry_within_the_route_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    mesh = FakeMesh(scripts={"cat-1": ["hang"], "cat-2": [200]})
    retry = RetryRule(attempts=2, per_try_timeout=1.0, retry_on=("gateway-error",))
    v1 = Forward(versions=(WeightedVersion(version="v1"),))
    started = trio.current_time()
    result = await run(mesh, config_with(RouteRule(action=v1, retry=retry, timeout=5.0)))
    assert result.status == 200
    assert 1.0 <= trio.current_time() - started < 2.0
    # The route timeout covers the retries: three hanging tries end at 2.5 s.
    mesh = FakeMesh(scripts={name: ["hang"] for name in ("cat-1", "cat-2", "cat-3")})
    started = trio.current_time()
    result = await run(mesh, config_with(RouteRule(retry=retry, timeout=2.5)))
    assert (result.status, result.flag) == (504, "UT")
    assert trio.current_time() - started == pytest.approx(2.5)


async def test_a_slow_answer_that_started_is_not_cut_by_the_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    mesh = FakeMesh(scripts={name: [(1.0, 200)] for name in ("cat-1", "cat-2", "cat-3")})
    result = await run(mesh, config_with(RouteRule(timeout=2.0)))
    assert result.status == 200


async def test_outlier_detection_ejects_and_the_clock_brings_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    mesh = FakeMesh(scripts={"cat-1": [500]})
    policy = DestinationPolicy(
        service="catalog", outlier=OutlierSettings(consecutive_errors=2, base_ejection=10.0)
    )
    v1 = Forward(versions=(WeightedVersion(version="v1"),))
    config, destinations = config_with(RouteRule(action=v1), policy=policy), new_destinations()
    for _ in range(4):
        await run(mesh, config, destinations)
    assert destinations.state("catalog").outlier.is_ejected("cat-1")
    mesh.sent.clear()
    for _ in range(4):
        assert (await run(mesh, config, destinations)).status == 200
    assert {instance for instance, _ in mesh.sent} == {"cat-2"}
    await trio.sleep(11)
    assert not destinations.state("catalog").outlier.is_ejected("cat-1")


async def test_state_survives_a_config_swap_and_follows_a_policy_change() -> None:
    destinations = new_destinations()
    destinations.sync(config_with())
    state = destinations.state("catalog")
    ticket = state.breaker.try_start_request()
    policy = DestinationPolicy(service="catalog", load_balancer="least_request")
    destinations.sync(config_with(policy=policy))
    assert destinations.state("catalog") is state
    assert state.balancer.kind == "least_request"
    assert state.breaker.in_use("requests") == 1
    assert ticket is not None
    ticket.release()


async def test_mirror_gets_a_copy_with_the_body_and_the_caller_is_unaffected() -> None:
    mesh = FakeMesh(scripts={"cat-3": ["connect-failure"]})
    rule = RouteRule(
        action=Forward(versions=(WeightedVersion(version="v1"),)),
        mirror=MirrorRule(version="v2", percent=100),
    )
    result = await run(mesh, config_with(rule), method=b"POST", body=b"payload")
    assert result.status == 200
    assert mesh.mirrored == [("cat-3", b"payload")]
    assert {instance for instance, _ in mesh.sent} <= {"cat-1", "cat-2"}


class _Live:
    """A client body arriving in pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.continued = False

    def poll_body_event(self) -> Any:
        from meshkit.proxy.codec.messages import END_OF_BODY, Body

        return Body(data=self.pieces.pop(0)) if self.pieces else END_OF_BODY

    async def receive_body_bytes(self) -> None:
        raise AssertionError("never needed here")

    async def send_continue_if_expected(self) -> None:
        self.continued = True


def _drain(source: RequestBodySource) -> bytes:
    from meshkit.proxy.codec.messages import Body

    out = b""
    while isinstance(event := source.poll_body_event(), Body):
        out += event.data
    return out


async def test_a_small_body_replays_and_a_large_one_streams_once() -> None:
    small = await ReplayableBody.read_ahead(_Live([b"ab", b"cd"]))
    assert small.complete and small.buffered_bytes == 4
    assert _drain(small.source()) == _drain(small.source()) == b"abcd"
    large = await ReplayableBody.read_ahead(_Live([b"x" * 40_000, b"y" * 40_000, b"z"]))
    assert not large.complete and large.buffered_bytes is None and large.data is None
    assert _drain(large.source()) == b"x" * 40_000 + b"y" * 40_000 + b"z"
    with pytest.raises(RuntimeError, match="only once"):
        large.source()


def test_a_request_without_length_or_chunking_has_no_body() -> None:
    assert not request_has_body(RequestHead(method=b"POST", target=b"/", headers=[]))
    chunked = RequestHead(method=b"POST", target=b"/", headers=[(b"transfer-encoding", b"chunked")])
    assert request_has_body(chunked)
    sized = RequestHead(method=b"POST", target=b"/", headers=[(b"content-length", b"3")])
    assert request_has_body(sized)
    empty = RequestHead(method=b"POST", target=b"/", headers=[(b"content-length", b"0")])
    assert not request_has_body(empty)


@attrs.define
class FailingMesh(FakeMesh):
    """Every try answers 503 after a second; counts the retries in flight."""

    tries: dict[bytes, int] = attrs.field(factory=dict)
    retries_in_flight: int = 0
    most_retries_in_flight: int = 0

    async def attempt(
        self,
        endpoint: Endpoint,
        head: RequestHead,
        body: RequestBodySource | None,
        on_response: ResponseHook,
    ) -> Outcome:
        retry = self.tries.get(head.target, 0) > 0
        self.tries[head.target] = self.tries.get(head.target, 0) + 1
        self.retries_in_flight += retry
        self.most_retries_in_flight = max(self.most_retries_in_flight, self.retries_in_flight)
        try:
            await trio.sleep(1.0)
        finally:
            self.retries_in_flight -= retry
        on_response(ResponseHead(status=503, headers=[]))
        return Outcome(status=503, flag="-", keep_alive=True, answered=False)


async def test_max_retries_bounds_the_retries_in_flight_at_admission(
    autojump_clock: trio.abc.Clock,
) -> None:
    """10 concurrent failing requests with max_retries=3: at most 3 retries in flight."""
    mesh = FailingMesh()
    policy = DestinationPolicy(service="catalog", breaker=BreakerLimits(max_retries=3))
    retry = RetryRule(attempts=3, retry_on=("5xx",))
    config, destinations = config_with(RouteRule(retry=retry), policy=policy), new_destinations()

    async def one(index: int) -> None:
        await run(mesh, config, destinations, target=f"/items/{index}".encode())

    async with trio.open_nursery() as nursery:
        for index in range(10):
            nursery.start_soon(one, index)
    assert sum(mesh.tries.values()) > 10
    assert 1 <= mesh.most_retries_in_flight <= 3
    assert destinations.state("catalog").breaker.in_use("retries") == 0


async def test_outlier_detection_never_empties_a_routed_subset(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A route pinned to a one-instance version keeps sending there (Envoy's panic mode)."""
    mesh = FakeMesh(scripts={"cat-3": [500, 500, 500, 200]})
    policy = DestinationPolicy(
        service="catalog", outlier=OutlierSettings(consecutive_errors=2, base_ejection=30.0)
    )
    v2 = Forward(versions=(WeightedVersion(version="v2"),))
    config, destinations = config_with(RouteRule(action=v2), policy=policy), new_destinations()
    for _ in range(3):
        assert (await run(mesh, config, destinations)).status == 500
    assert destinations.state("catalog").outlier.is_ejected("cat-3")
    result = await run(mesh, config, destinations)
    assert (result.status, result.flag) == (200, "-")
    assert [instance for instance, _ in mesh.sent] == ["cat-3"] * 4
    assert not mesh.replies


async def test_a_try_cut_by_the_route_timeout_counts_for_outlier_detection(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A hung (SIGSTOPped) instance: every request to it ends in the route timeout.
    mesh = FakeMesh(scripts={"cat-1": ["hang"]})
    policy = DestinationPolicy(
        service="catalog", outlier=OutlierSettings(consecutive_errors=2, base_ejection=30.0)
    )
    v1 = Forward(versions=(WeightedVersion(version="v1"),))
    config = config_with(RouteRule(action=v1, timeout=1.0), policy=policy)
    destinations = new_destinations()
    results = [await run(mesh, config, destinations) for _ in range(4)]
    assert [result.status for result in results].count(504) == 2
    assert destinations.state("catalog").outlier.is_ejected("cat-1")
    mesh.sent.clear()
    for _ in range(4):
        assert (await run(mesh, config, destinations)).status == 200
    assert {instance for instance, _ in mesh.sent} == {"cat-2"}
