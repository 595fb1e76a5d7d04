from __future__ import annotations

import pytest

from meshkit.proxy.config import ProxyConfig
from meshkit.registry.state import InstanceRecord, Registry, RegistryError


def make_registry() -> Registry:
    registry = Registry(mesh="shop")
    registry.add(InstanceRecord(id="catalog-v1-0", service="catalog", version="v1", port=9001))
    registry.add(InstanceRecord(id="frontend-0", service="frontend", port=9002))
    return registry


def test_instances_start_stopped_and_keep_their_order() -> None:
    registry = make_registry()
    assert [rec.id for rec in registry.instances()] == ["catalog-v1-0", "frontend-0"]
    assert all(rec.state == "stopped" for rec in registry.instances())


def test_duplicate_and_unknown_instances_are_refused_readably() -> None:
    registry = make_registry()
    with pytest.raises(RegistryError, match="already registered"):
        registry.add(InstanceRecord(id="frontend-0", service="frontend"))
    with pytest.raises(RegistryError, match="no instance called 'nope' in mesh 'shop'"):
        registry.get("nope")


def test_transitions_follow_the_table() -> None:
    registry = make_registry()
    assert registry.transition("frontend-0", "starting")
    assert registry.transition("frontend-0", "healthy")
    assert not registry.transition("frontend-0", "healthy")
    with pytest.raises(RegistryError, match="cannot go from healthy to backoff"):
        registry.transition("frontend-0", "backoff")
    assert registry.transition("frontend-0", "crashed", error="exit 3")
    assert registry.get("frontend-0").last_error == "exit 3"
    assert registry.transition("frontend-0", "backoff")
    assert registry.transition("frontend-0", "starting")


def test_state_changes_only_through_transition() -> None:
    registry = make_registry()
    with pytest.raises(RegistryError, match="transition"):
        registry.update("frontend-0", state="healthy")


def test_healthy_instances_need_a_ready_sidecar() -> None:
    registry = make_registry()
    registry.transition("catalog-v1-0", "starting")
    registry.transition("catalog-v1-0", "healthy")
    assert registry.healthy_instances_of("catalog") == []
    registry.mark_sidecar_ready("catalog-v1-0", pid=42, ports={"inbound": 7001, "admin": 7002})
    [record] = registry.healthy_instances_of("catalog")
    assert (record.inbound_port, record.admin_port, record.sidecar_pid) == (7001, 7002, 42)


def test_listeners_hear_every_change() -> None:
    registry = make_registry()
    heard: list[str] = []
    registry.on_change(heard.append)
    registry.transition("frontend-0", "starting")
    registry.update("frontend-0", pid=10)
    registry.record_ack("frontend-0", version=1, error=None)
    assert heard == ["frontend-0"] * 3
    assert registry.ack_of("frontend-0") is not None


def test_publish_keeps_only_newer_versions() -> None:
    registry = make_registry()
    heard: list[str] = []
    registry.on_change(heard.append)
    first = ProxyConfig(version=1, mesh="shop", instance="frontend-0", service="frontend")
    assert registry.publish([first]) == ["frontend-0"]
    assert registry.publish([first]) == []
    assert registry.config_version("frontend-0") == 1
    assert registry.config_version("catalog-v1-0") == 0
    assert heard == ["frontend-0"]


def test_problems_are_listed_and_cleared() -> None:
    registry = make_registry()
    registry.set_problem("loop:a", "a is in a restart loop")
    assert registry.problems() == ["a is in a restart loop"]
    registry.set_problem("loop:a", None)
    assert registry.problems() == []
