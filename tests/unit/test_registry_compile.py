from __future__ import annotations

from meshkit.dsl.spec import GatewayRoute, GatewaySpec, MeshSpec, ServiceSpec
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.wire import config_from_dict, config_to_dict
from meshkit.registry.compile import compile_configs
from meshkit.registry.state import InstanceRecord, Registry

SPEC = MeshSpec(
    name="shop",
    file="Meshfile.py",
    services=(
        ServiceSpec(name="frontend", command="run-frontend", upstreams=("catalog",)),
        ServiceSpec(name="catalog", version="v1", command="run-catalog", replicas=2),
        ServiceSpec(name="catalog", version="v2", command="run-catalog"),
    ),
    gateway=GatewaySpec(
        port=0,
        routes=(
            GatewayRoute(prefix="/", service="frontend"),
            GatewayRoute(prefix="/api/catalog", service="catalog"),
        ),
    ),
)


def make_registry() -> Registry:
    registry = Registry(mesh="shop")
    port = 9000
    for deployment in SPEC.services:
        for instance_id in deployment.instance_ids():
            port += 1
            registry.add(
                InstanceRecord(
                    id=instance_id,
                    service=deployment.name,
                    version=deployment.version,
                    port=port,
                )
            )
    registry.add(InstanceRecord(id="gateway", service="gateway", kind="gateway"))
    return registry


def make_healthy(registry: Registry, instance_id: str, inbound: int) -> None:
    registry.mark_sidecar_ready(instance_id, pid=1, ports={"inbound": inbound})
    registry.transition(instance_id, "starting")
    registry.transition(instance_id, "healthy")


def test_every_instance_and_the_gateway_get_a_config() -> None:
    configs = compile_configs(SPEC, make_registry())
    assert sorted(configs) == [
        "catalog-v1-0",
        "catalog-v1-1",
        "catalog-v2-0",
        "frontend-0",
        "gateway",
    ]
    assert all(config.version == 1 for config in configs.values())


def test_app_sidecar_listeners_follow_the_contract() -> None:
    config = compile_configs(SPEC, make_registry())["frontend-0"]
    names = [(lst.name, lst.kind, lst.port, lst.host) for lst in config.listeners]
    assert names == [
        ("inbound", "inbound", 0, "127.0.0.1"),
        ("outbound", "outbound", 0, "127.0.0.1"),
        ("upstream:catalog", "upstream", 0, "127.0.0.1"),
        ("admin", "admin", 0, "127.0.0.1"),
    ]
    assert config.listeners[2].cluster == "catalog"
    assert config.app is not None and config.app.port == 9001
    assert (config.mesh, config.service, config.instance) == ("shop", "frontend", "frontend-0")


def test_gateway_config_routes_longest_prefix_first() -> None:
    config = compile_configs(SPEC, make_registry())["gateway"]
    assert config.app is None
    assert [lst.name for lst in config.listeners] == ["gateway", "admin"]
    gateway = config.listeners[0]
    assert gateway.kind == "gateway"
    assert [(r.prefix, r.cluster) for r in gateway.routes] == [
        ("/api/catalog", "catalog"),
        ("/", "frontend"),
    ]


def test_clusters_list_only_healthy_endpoints_of_every_version() -> None:
    registry = make_registry()
    make_healthy(registry, "catalog-v1-1", 7011)
    make_healthy(registry, "catalog-v2-0", 7020)
    registry.transition("catalog-v1-0", "starting")
    registry.mark_sidecar_ready("catalog-v1-0", pid=1, ports={"inbound": 7010})
    config = compile_configs(SPEC, registry)["frontend-0"]
    assert [c.name for c in config.clusters] == ["frontend", "catalog"]
    catalog = config.cluster("catalog")
    assert catalog is not None
    assert [(e.instance, e.port, e.version) for e in catalog.endpoints] == [
        ("catalog-v1-1", 7011, "v1"),
        ("catalog-v2-0", 7020, "v2"),
    ]
    frontend = config.cluster("frontend")
    assert frontend is not None and frontend.endpoints == ()


def test_versions_bump_only_when_a_config_changes() -> None:
    registry = make_registry()
    registry.publish(compile_configs(SPEC, registry).values())
    again = compile_configs(SPEC, registry)
    assert registry.publish(again.values()) == []
    make_healthy(registry, "catalog-v2-0", 7020)
    changed = compile_configs(SPEC, registry)
    assert all(config.version == 2 for config in changed.values())
    assert sorted(registry.publish(changed.values())) == sorted(changed)
    registry.update("frontend-0", port=9999)
    only_frontend = compile_configs(SPEC, registry)
    assert sorted(registry.publish(only_frontend.values())) == ["frontend-0"]
    assert registry.config_version("frontend-0") == 3
    assert registry.config_version("catalog-v1-0") == 2


def test_configs_survive_the_wire() -> None:
    registry = make_registry()
    make_healthy(registry, "catalog-v1-0", 7010)
    for config in compile_configs(SPEC, registry).values():
        assert isinstance(config, ProxyConfig)
        assert config_from_dict(config_to_dict(config)) == config


def test_no_gateway_config_without_a_gateway_in_the_spec() -> None:
    spec = MeshSpec(name="shop", file="Meshfile.py", services=SPEC.services)
    assert "gateway" not in compile_configs(spec, make_registry())


def test_an_endpoint_carries_its_restart_count() -> None:
    # A sidecar sees a restarted instance as a new process (a clean outlier record),
    # even when it never saw it leave the healthy set.
    registry = make_registry()
    make_healthy(registry, "catalog-v1-1", 7011)
    registry.update("catalog-v1-1", restarts=2)
    catalog = compile_configs(SPEC, registry)["frontend-0"].cluster("catalog")
    assert catalog is not None
    assert [(e.instance, e.restarts) for e in catalog.endpoints] == [("catalog-v1-1", 2)]


def test_the_wire_form_is_the_converters_for_every_config_of_a_compile() -> None:
    from meshkit.api.converter import converter

    registry = make_registry()
    make_healthy(registry, "catalog-v1-0", 7001)
    for healthy_next in ("catalog-v2-0", None):  # new shared tuples in the second compile
        configs = compile_configs(SPEC, registry)
        for config in configs.values():
            assert config_to_dict(config) == converter.unstructure(config)
        registry.publish(configs.values())
        if healthy_next is not None:
            make_healthy(registry, healthy_next, 7002)
