"""Runtime faults in the control plane: the store, its JSON intake, compile, the API, expiry."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
import trio

from meshkit.api import FaultRule, HeaderMatch, RuntimeFault
from meshkit.dsl.spec import GatewaySpec, MeshSpec, ServiceSpec
from meshkit.proxy.policy.faults import FaultInjector
from meshkit.registry.compile import compile_configs
from meshkit.registry.faults import (
    DEFAULT_FAULT_DURATION,
    FaultRequestError,
    FaultStore,
    UnknownService,
    fault_request,
)
from meshkit.registry.server.api import BadRequest, ControlServer
from meshkit.registry.server.changes import RegistryChanges
from meshkit.registry.server.faults import FaultControl
from meshkit.registry.state import InstanceRecord, Registry
from meshkit.registry.status import status_document

SPEC = MeshSpec(
    name="shop",
    file="Meshfile.py",
    services=(
        ServiceSpec(name="frontend", command="x", upstreams=("catalog",)),
        ServiceSpec(name="catalog", command="x"),
    ),
    gateway=GatewaySpec(port=0),
)
ABORT = FaultRule(abort_status=503, abort_percent=100.0)
EPOCH = 1_700_000_000.0


def fake_wall_clock() -> float:
    """Epoch seconds that follow trio's (autojump) clock."""
    return EPOCH + trio.current_time()


def make_registry() -> Registry:
    registry = Registry(mesh="shop")
    port = 9000
    for record in (
        InstanceRecord(id="frontend-0", service="frontend", port=9001),
        InstanceRecord(id="catalog-0", service="catalog", port=9002),
        InstanceRecord(id="gateway", service="gateway", kind="gateway"),
    ):
        registry.add(record)
        port += 10
        registry.mark_sidecar_ready(record.id, pid=1, ports={"inbound": port, "admin": port + 1})
        registry.transition(record.id, "starting")
        registry.transition(record.id, "healthy")
    return registry


# -- the store ----------------------------------------------------------------


def test_the_store_numbers_faults_and_tells_of_every_change() -> None:
    changes: list[bool] = []
    store = FaultStore(on_change=lambda: changes.append(True))
    first = store.add("catalog", ABORT, expires_at=100.0)
    second = store.add("catalog", ABORT, expires_at=50.0)
    third = store.add("frontend", ABORT, expires_at=200.0)
    assert [first.id, second.id, third.id] == ["f1", "f2", "f3"]
    assert store.next_expiry() == 50.0
    assert [f.id for f in store.active(60.0)] == ["f1", "f3"]
    assert [f.id for f in store.expire(60.0)] == ["f2"]
    assert store.remove("f2") is None
    assert [f.id for f in store.remove_service("catalog")] == ["f1"]
    assert store.remove_service("catalog") == []
    assert store.remove("f3") == third
    assert store.next_expiry() is None
    assert len(changes) == 6  # three additions, one expiry, two removals


def test_a_fault_request_becomes_a_rule_with_a_default_expiry() -> None:
    request = fault_request(
        {
            "service": "catalog",
            "abort": 503,
            "delay": "200ms",
            "percent": 50,
            "path_prefix": "/items",
            "headers": {"X-Canary": "1"},
        },
        known_services=["catalog", "frontend"],
    )
    assert request.duration == DEFAULT_FAULT_DURATION
    assert request.rule == FaultRule(
        delay=0.2,
        delay_percent=50.0,
        abort_status=503,
        abort_percent=50.0,
        headers=(HeaderMatch(name="x-canary", value="1"),),
        path_prefix="/items",
    )
    grpc = fault_request(
        {"service": "catalog", "abort": "UNAVAILABLE", "duration": "30s"},
        known_services=["catalog"],
    )
    assert (grpc.rule.abort_grpc, grpc.rule.abort_status, grpc.duration) == (
        "unavailable",
        None,
        30,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"service": "catalog"}, "needs an 'abort'"),
        ({"service": "catalog", "abort": 99}, "from 200 to 599"),
        ({"service": "catalog", "abort": "teapot"}, "gRPC code name"),
        ({"service": "catalog", "delay": "two"}, "'delay': 'two' is not a duration"),
        ({"service": "catalog", "abort": 503, "percent": 0}, "'percent'"),
        ({"service": "catalog", "abort": 503, "path_prefix": "items"}, "starting with '/'"),
        ({"service": "catalog", "abort": 503, "headers": ["x"]}, "'headers' must map"),
        ({"service": "catalog", "abort": 503, "duration": 0}, "'duration' must be more than 0"),
        ({"service": "catalog", "abort": 503, "fro": 1}, "unknown field(s) 'fro'"),
    ],
)
def test_a_bad_fault_request_names_the_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(FaultRequestError) as caught:
        fault_request(body, known_services=["catalog"])
    assert message in str(caught.value)


def test_an_unknown_service_is_named_with_the_known_ones() -> None:
    with pytest.raises(UnknownService) as caught:
        fault_request({"service": "catalgo", "abort": 503}, known_services=["frontend", "catalog"])
    assert str(caught.value) == (
        "no service called 'catalgo' in this mesh (its services: catalog, frontend)"
    )


# -- compile --------------------------------------------------------------------


def test_compile_gives_every_sidecar_only_the_unexpired_faults() -> None:
    registry = make_registry()
    registry.publish(compile_configs(SPEC, registry, now=0.0).values())
    live = registry.faults.add("catalog", ABORT, expires_at=100.0)
    registry.faults.add("frontend", ABORT, expires_at=10.0)
    configs = compile_configs(SPEC, registry, now=50.0)
    assert set(configs) == {"frontend-0", "catalog-0", "gateway"}
    for config in configs.values():
        assert config.runtime_faults == (live.fault,)
        assert config.version == 2
    registry.publish(configs.values())
    assert all(
        config.runtime_faults == () and config.version == 3
        for config in compile_configs(SPEC, registry, now=100.0).values()
    )


def test_a_fault_shows_in_the_status_document_until_it_expires() -> None:
    registry = make_registry()
    registry.faults.add("catalog", ABORT, expires_at=EPOCH + 60)
    [fault] = status_document(registry, file="M", now=EPOCH)["faults"]
    assert fault == {
        "id": "f1",
        "service": "catalog",
        "abort": 503,
        "delay": None,
        "percent": 100.0,
        "path_prefix": None,
        "headers": None,
        "expires_at": EPOCH + 60,
        "expires_in": 60.0,
    }
    assert status_document(registry, file="M", now=EPOCH + 60)["faults"] == []


def test_the_injector_honours_a_path_prefix() -> None:
    injector = FaultInjector(random=random.Random(1), wall_clock=lambda: 0.0)
    rule = FaultRule(abort_status=503, abort_percent=100.0, path_prefix="/items")
    faults = (RuntimeFault(service="catalog", fault=rule, expires_at=10.0),)

    def decide(path: bytes) -> bool:
        decision = injector.decide(service="catalog", headers=[], runtime_faults=faults, path=path)
        return decision.aborts

    assert decide(b"/items/3?x=1")
    assert not decide(b"/health")
    assert not decide(b"/x?/items")
    assert not decide(b"")


# -- the control API ------------------------------------------------------------


async def sidecars_applying(registry: Registry, changes: RegistryChanges, lag: float) -> None:
    """Plays the compile loop and every sidecar: publish, then ACK ``lag`` seconds later."""
    seen = -1
    while True:
        seen = changes.generation
        registry.publish(compile_configs(SPEC, registry, now=fake_wall_clock()).values())
        await trio.sleep(lag)
        for record in registry.instances():
            version = registry.config_version(record.id)
            ack = registry.ack_of(record.id)
            if ack is None or ack.version < version:
                registry.record_ack(record.id, version=version, error=None)
        if changes.generation == seen:
            await changes.wait_beyond(seen)


def make_server(
    registry: Registry, on_restart: Callable[[str], object] | None = None
) -> ControlServer:
    changes = RegistryChanges(registry)
    restart = None
    if on_restart is not None:

        async def restart(service: str) -> dict[str, object]:
            on_restart(service)
            return {"applied": True, "summary": f"restart {service}", "error": None}

    return ControlServer(
        registry,
        meshfile="M",
        on_down=lambda: None,
        changes=changes,
        on_restart=restart,
        faults=FaultControl(registry, changes, wall_clock=fake_wall_clock, sync_timeout=5.0),
    )


async def test_injecting_answers_once_every_sidecar_applied_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    registry = make_registry()
    server = make_server(registry)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sidecars_applying, registry, server.changes, 0.3)
        await trio.sleep(1)
        started = trio.current_time()
        body = json.dumps({"service": "catalog", "abort": 503, "duration": "1m"}).encode()
        reply = await server.dispatch("POST", "/v1/faults", body)
        assert reply.status == 200
        assert reply.body["synced"] is True
        assert reply.body["lagging"] == []
        assert 0.3 <= trio.current_time() - started < 1
        assert reply.body["expires_at"] == pytest.approx(EPOCH + 61)
        for record in registry.instances():
            applied = registry.applied_config_of(record.id)
            assert applied is not None and len(applied.runtime_faults) == 1
        listing = await server.dispatch("GET", "/v1/faults", b"")
        assert [fault["id"] for fault in listing.body["faults"]] == [reply.body["id"]]
        cleared = await server.dispatch("DELETE", "/v1/faults?service=catalog", b"")
        assert (cleared.status, cleared.body["removed"], cleared.body["synced"]) == (
            200,
            ["f1"],
            True,
        )
        for record in registry.instances():
            applied = registry.applied_config_of(record.id)
            assert applied is not None and applied.runtime_faults == ()
        nursery.cancel_scope.cancel()


async def test_without_sidecar_answers_the_injection_says_it_is_not_synced(
    autojump_clock: trio.abc.Clock,
) -> None:
    registry = make_registry()
    registry.publish(compile_configs(SPEC, registry, now=EPOCH).values())
    server = make_server(registry)
    started = trio.current_time()
    reply = await server.dispatch("POST", "/v1/faults", b'{"service": "catalog", "delay": 1}')
    assert (reply.status, reply.body["synced"]) == (200, False)
    assert reply.body["lagging"] == [record.id for record in registry.instances()]
    assert reply.body["lagging"]
    assert trio.current_time() - started == pytest.approx(5.0)
    missing = await server.dispatch("DELETE", "/v1/faults/f9", b"")
    assert missing.status == 404
    assert "no fault with id 'f9'" in missing.body["error"]
    assert "f1" in missing.body["error"]


async def test_a_fault_leaves_the_configs_when_it_expires(autojump_clock: trio.abc.Clock) -> None:
    registry = make_registry()
    server = make_server(registry)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sidecars_applying, registry, server.changes, 0.1)
        nursery.start_soon(server.faults.expire_forever)
        await trio.sleep(1)
        reply = await server.dispatch(
            "POST", "/v1/faults", b'{"service": "catalog", "abort": 503, "duration": 30}'
        )
        injected_at = trio.current_time()
        assert reply.body["synced"]
        [fault] = [stored.fault for stored in registry.faults.active(fake_wall_clock())]
        await server.changes.wait_until(
            lambda reg: server.faults.applied_everywhere(present=(), absent=(fault,))
        )
        assert trio.current_time() - injected_at == pytest.approx(30, abs=0.5)
        assert list(registry.faults.active(fake_wall_clock())) == []
        nursery.cancel_scope.cancel()


async def test_fault_and_restart_requests_are_refused_with_reasons() -> None:
    registry = make_registry()
    restarted: list[str] = []
    server = make_server(registry, on_restart=restarted.append)
    unknown = await server.dispatch("POST", "/v1/faults", b'{"service": "nope", "abort": 503}')
    assert unknown.status == 404
    assert unknown.body["error"].endswith("(its services: catalog, frontend)")
    bad = await server.dispatch("POST", "/v1/faults", b'{"service": "catalog", "delay": "two"}')
    assert bad.status == 400 and "'delay'" in bad.body["error"]
    assert bad.body["error"].startswith("bad fault: ")
    unknown_limit = await server.dispatch(
        "POST", "/v1/limits", b'{"service": "nope", "rate": "5/s"}'
    )
    assert unknown_limit.status == 404
    assert unknown_limit.body["error"].endswith("(its services: catalog, frontend)")
    bad_limit = await server.dispatch("POST", "/v1/limits", b'{"service": "catalog", "rate": 5}')
    assert bad_limit.status == 400 and bad_limit.body["error"].startswith("bad limit: ")
    with pytest.raises(BadRequest, match=r"\?service=<name> or /<id>") as nothing:
        await server.dispatch("DELETE", "/v1/faults", b"")
    assert nothing.value.status == 400
    with pytest.raises(BadRequest, match="its services: catalog, frontend") as unknown_restart:
        await server.dispatch("POST", "/v1/services/nope/restart", b"")
    assert unknown_restart.value.status == 404
    restart = await server.dispatch("POST", "/v1/services/catalog/restart", b"")
    assert restart.status == 200 and restart.body["applied"] is True
    assert restarted == ["catalog"]
    with pytest.raises(BadRequest, match="cannot restart") as no_hook:
        await make_server(registry).dispatch("POST", "/v1/services/catalog/restart", b"")
    assert no_hook.value.status == 503
