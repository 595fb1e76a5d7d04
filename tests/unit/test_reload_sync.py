"""Config sync for hot reload: routes in every config, ACK/NACK in the status, the control API."""

from __future__ import annotations

import json

import attrs
import pytest

from meshkit.api import Forward, HeaderMatch, RequestMatch, RouteRule, RouteTable, WeightedVersion
from meshkit.cli.routes import format_routes
from meshkit.cli.status import format_status
from meshkit.dsl.spec import GatewayRoute, GatewaySpec, MeshSpec, RouteSpec, RuleSpec, ServiceSpec
from meshkit.proxy.sidecar import ConfigRejected, parse_config
from meshkit.proxy.wire import config_to_dict
from meshkit.registry.compile import compile_configs
from meshkit.registry.server.api import BadRequest, ControlServer
from meshkit.registry.state import InstanceRecord, Registry, RegistryError, ReloadReport
from meshkit.registry.status import status_document

SPEC = MeshSpec(
    name="shop",
    file="Meshfile.py",
    services=(
        ServiceSpec(name="frontend", command="x"),
        ServiceSpec(name="catalog", version="v1", command="y"),
        ServiceSpec(name="catalog", version="v2", command="y"),
    ),
    gateway=GatewaySpec(port=0, routes=(GatewayRoute(prefix="/", service="frontend"),)),
)


def split(v1: int, v2: int) -> RouteSpec:
    return RouteSpec(
        service="catalog",
        default=Forward(
            versions=(
                WeightedVersion(version="v1", weight=v1),
                WeightedVersion(version="v2", weight=v2),
            )
        ),
    )


def make_registry(spec: MeshSpec = SPEC) -> Registry:
    registry = Registry(mesh="shop")
    for svc in spec.services:
        for instance_id in svc.instance_ids():
            registry.add(
                InstanceRecord(id=instance_id, service=svc.name, version=svc.version, port=9000)
            )
    registry.add(InstanceRecord(id="gateway", service="gateway", kind="gateway"))
    registry.publish(compile_configs(spec, registry).values())
    return registry


def test_every_config_carries_every_route_table_and_policy() -> None:
    registry = make_registry(attrs.evolve(SPEC, routes=(split(100, 0),)))
    for instance_id in ("frontend-0", "catalog-v1-0", "gateway"):
        config = registry.config_of(instance_id)
        assert config is not None
        assert [table.service for table in config.routes] == ["frontend", "catalog"]
        assert [policy.service for policy in config.policies] == ["frontend", "catalog"]


def test_a_route_change_bumps_every_config_and_nothing_else_does() -> None:
    registry = make_registry(attrs.evolve(SPEC, routes=(split(100, 0),)))
    same = compile_configs(attrs.evolve(SPEC, routes=(split(100, 0),)), registry)
    assert registry.publish(same.values()) == []
    flipped = compile_configs(attrs.evolve(SPEC, routes=(split(0, 100),)), registry)
    assert sorted(registry.publish(flipped.values())) == sorted(
        ["frontend-0", "catalog-v1-0", "catalog-v2-0", "gateway"]
    )
    config = registry.config_of("frontend-0")
    assert config is not None and config.version == 2
    weights = [(w.version, w.weight) for w in config.routes[1].rules[-1].action.versions]  # type: ignore[union-attr]
    assert weights == [("v1", 0), ("v2", 100)]


def test_sync_is_stale_then_synced_then_nacked_with_the_reason() -> None:
    registry = make_registry()
    record = registry.get("frontend-0")

    def sync_of(instance_id: str) -> dict[str, object]:
        document = status_document(registry, file="Meshfile.py", now=0.0)
        for service in document["services"]:
            for instance in service["instances"]:
                if instance["id"] == instance_id:
                    return instance  # type: ignore[no-any-return]
        raise KeyError(instance_id)

    assert sync_of(record.id)["sync"] == "STALE"
    registry.record_ack(record.id, version=1, error=None)
    assert sync_of(record.id)["sync"] == "SYNCED"
    assert sync_of(record.id)["applied_version"] == 1
    registry.publish(
        compile_configs(attrs.evolve(SPEC, routes=(split(50, 50),)), registry).values()
    )
    assert sync_of(record.id)["sync"] == "STALE"
    registry.record_ack(record.id, version=2, error="invalid route: bad pattern")
    instance = sync_of(record.id)
    assert instance["sync"] == "NACKED: invalid route: bad pattern"
    assert instance["applied_version"] == 1 and instance["config_version"] == 2
    applied = registry.applied_config_of(record.id)
    assert applied is not None and applied.version == 1
    registry.transition(record.id, "starting")
    errors = status_document(registry, file="Meshfile.py", now=0.0)["errors"]
    assert "frontend-0: config version 2 NACKED: invalid route: bad pattern" in errors


def test_a_refused_reload_shows_in_the_status_until_a_good_one() -> None:
    registry = make_registry()
    registry.record_reload(ReloadReport(error="Meshfile.py:7: unknown service 'nosuch'"))
    document = status_document(registry, file="Meshfile.py", now=0.0)
    assert "reload: Meshfile.py:7: unknown service 'nosuch'" in document["errors"]
    assert "reload: refused: Meshfile.py:7" in format_status(document, now=0.0)
    registry.record_reload(ReloadReport(reloads=1, duration_ms=312.5, summary="config: routes"))
    document = status_document(registry, file="Meshfile.py", now=0.0)
    assert document["errors"] == []
    assert document["reload"]["duration_ms"] == 312.5
    assert "reload: 1 applied, the last in 312.5 ms (config: routes)" in format_status(
        document, now=0.0
    )


def test_replacements_keep_the_stable_name_and_leave_the_clusters_when_retiring() -> None:
    registry = make_registry()
    registry.add(InstanceRecord(id="catalog-v1-0~2", service="catalog", version="v1", port=9001))
    for instance_id, port in (("catalog-v1-0", 7001), ("catalog-v1-0~2", 7002)):
        registry.transition(instance_id, "starting")
        registry.transition(instance_id, "healthy")
        registry.mark_sidecar_ready(instance_id, pid=1, ports={"inbound": port})
    assert registry.get("catalog-v1-0~2").name == "catalog-v1-0"
    assert registry.get("catalog-v1-0~2").generation == 2
    assert registry.newest_named("catalog-v1-0") == registry.get("catalog-v1-0")
    registry.update("catalog-v1-0", retiring=True)
    assert [rec.id for rec in registry.healthy_instances_of("catalog")] == ["catalog-v1-0~2"]
    with pytest.raises(RegistryError, match="stop it first"):
        registry.remove("catalog-v1-0")
    registry.transition("catalog-v1-0", "stopped")
    registry.remove("catalog-v1-0")
    assert registry.newest_named("catalog-v1-0") == registry.get("catalog-v1-0~2")


def test_the_sidecar_nacks_a_route_table_it_cannot_compile() -> None:
    registry = make_registry()
    config = registry.config_of("frontend-0")
    assert config is not None
    bad_header = HeaderMatch(name="x", kind="regex", value="(")
    bad = RouteTable(
        service="catalog", rules=(RouteRule(match=RequestMatch(headers=(bad_header,))),)
    )
    raw = config_to_dict(attrs.evolve(config, routes=(bad,)))
    with pytest.raises(ConfigRejected, match=r"invalid route: .*not a valid regular expression"):
        parse_config(raw, instance="frontend-0")
    doubled = config_to_dict(attrs.evolve(config, routes=config.routes * 2))
    with pytest.raises(ConfigRejected, match="two route tables for service 'frontend'"):
        parse_config(doubled, instance="frontend-0")
    assert parse_config(config_to_dict(config), instance="frontend-0") == config


async def test_control_api_serves_the_applied_config_and_reloads() -> None:
    registry = make_registry(
        attrs.evolve(
            SPEC,
            routes=(
                RouteSpec(
                    service="catalog",
                    rules=(
                        RuleSpec(
                            match=RequestMatch(headers=(HeaderMatch(name="x-canary", value="1"),)),
                            action=Forward(versions=(WeightedVersion(version="v2"),)),
                        ),
                    ),
                ),
            ),
        )
    )
    reloads: list[bool] = []

    async def reload() -> dict[str, object]:
        reloads.append(True)
        return {"applied": True, "summary": "no change", "error": None, "duration_ms": 1.0}

    server = ControlServer(registry, meshfile="Meshfile.py", on_down=lambda: None, on_reload=reload)
    reply = await server.dispatch("GET", "/v1/instances/frontend-0/config", b"")
    assert reply.status == 200 and reply.body["config"] is None and reply.body["sync"] == "STALE"
    await server.dispatch(
        "POST", "/v1/instances/frontend-0/ack", json.dumps({"version": 1, "error": None}).encode()
    )
    reply = await server.dispatch("GET", "/v1/instances/frontend-0/config", b"")
    assert reply.body["version"] == 1 and reply.body["sync"] == "SYNCED"
    text = format_routes(reply.body)
    assert "header x-canary exact '1' -> v2=100" in text
    assert "prefix" not in text  # only the gateway has prefix routes
    assert "(unbound)" in text  # this sidecar never reported its ports
    reply.body["bound_ports"] = {"outbound": 41234}
    assert "outbound (outbound, plaintext) 127.0.0.1:41234" in format_routes(reply.body)
    reply = await server.dispatch("POST", "/v1/reload", b"")
    assert reply.status == 200 and reply.body["applied"] is True and reloads == [True]


async def test_unknown_instance_config_is_a_clear_404() -> None:
    server = ControlServer(make_registry(), meshfile="Meshfile.py", on_down=lambda: None)
    with pytest.raises(RegistryError, match="no instance called 'nosuch'"):
        await server.dispatch("GET", "/v1/instances/nosuch/config", b"")
    with pytest.raises(BadRequest, match="cannot reload") as refused:
        await server.dispatch("POST", "/v1/reload", b"")
    assert refused.value.status == 503
