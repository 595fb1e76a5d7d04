"""The pure halves of hot reload: the spec diff, the rollout plan, what a file change means."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from meshkit.api import Forward, WeightedVersion
from meshkit.api.jwt import JwtRule
from meshkit.dsl.spec import (
    GatewayRoute,
    GatewaySpec,
    JwtSpec,
    MeshSpec,
    Origin,
    RouteSpec,
    ServiceSpec,
)
from meshkit.registry.diff import DiffRefused, diff_specs, restart_reasons
from meshkit.runtime.policy.rollout import (
    Retire,
    RunningSlot,
    StartInstance,
    StopInstance,
    WaitDrained,
    WaitHealthy,
    describe,
    next_generation_id,
    plan_rollout,
)
from meshkit.runtime.watch import Trigger, WatchTargets, classify

CATALOG = ServiceSpec(name="catalog", version="v1", command="run-catalog", replicas=2)
FRONTEND = ServiceSpec(
    name="frontend",
    command="run-frontend",
    upstreams=("catalog",),
    depends_on=("catalog",),
    watch=("/src/frontend",),
)
SPEC = MeshSpec(
    name="shop",
    file="Meshfile.py",
    services=(FRONTEND, CATALOG),
    gateway=GatewaySpec(port=0, routes=(GatewayRoute(prefix="/", service="frontend"),)),
)


def running(spec: MeshSpec) -> dict[str, RunningSlot]:
    slots = {
        name: RunningSlot(instance_id=name, deployment=svc)
        for svc in spec.services
        for name in svc.instance_ids()
    }
    if spec.gateway is not None:
        slots["gateway"] = RunningSlot(instance_id="gateway", deployment=None)
    return slots


def with_service(spec: MeshSpec, service: ServiceSpec) -> MeshSpec:
    others = tuple(svc for svc in spec.services if svc.key != service.key)
    return attrs.evolve(spec, services=(*others, service))


# -- the diff ---------------------------------------------------------------


def test_an_unchanged_spec_is_no_change_even_when_declarations_moved() -> None:
    moved = with_service(SPEC, attrs.evolve(CATALOG, origin=Origin(file="Meshfile.py", line=40)))
    assert diff_specs(SPEC, moved).empty
    assert diff_specs(SPEC, moved).summary() == "no change"


def test_env_or_command_change_restarts_only_that_deployment() -> None:
    new = with_service(SPEC, attrs.evolve(CATALOG, env={"FLAVOUR": "new"}))
    diff = diff_specs(SPEC, new)
    assert [(c.key, c.kind, c.reasons) for c in diff.deployments] == [
        ("catalog-v1", "restart", ("env",))
    ]
    assert diff.config == ()
    assert restart_reasons(CATALOG, attrs.evolve(CATALOG, command="other")) == ("command",)


def test_replicas_alone_scale_and_watch_paths_alone_change_nothing() -> None:
    assert diff_specs(SPEC, with_service(SPEC, attrs.evolve(CATALOG, replicas=3))).keys(
        "scale"
    ) == {"catalog-v1"}
    assert diff_specs(SPEC, with_service(SPEC, attrs.evolve(FRONTEND, watch=()))).empty


def test_routes_and_gateway_are_config_only() -> None:
    route = RouteSpec(
        service="catalog",
        default=Forward(versions=(WeightedVersion(version="v1", weight=100),)),
    )
    gateway = GatewaySpec(port=0, routes=(GatewayRoute(prefix="/", service="catalog"),))
    diff = diff_specs(SPEC, attrs.evolve(SPEC, routes=(route,), gateway=gateway))
    assert diff.deployments == ()
    assert diff.config == ("routes", "gateway")


def test_added_and_removed_deployments_start_and_stop() -> None:
    v2 = ServiceSpec(name="catalog", version="v2", command="run-catalog")
    new = attrs.evolve(SPEC, services=(CATALOG, v2))
    diff = diff_specs(SPEC, new)
    assert diff.keys("start") == {"catalog-v2"}
    assert diff.keys("stop") == {"frontend"}
    assert "start catalog-v2" in diff.summary() and "stop frontend" in diff.summary()


def test_renaming_the_mesh_is_refused_with_a_reason() -> None:
    with pytest.raises(DiffRefused, match="renaming a mesh needs"):
        diff_specs(SPEC, attrs.evolve(SPEC, name="other"))


# -- the rollout plan -----------------------------------------------------------


def test_generations_count_up_from_the_stable_name() -> None:
    assert next_generation_id("catalog-v1-0") == "catalog-v1-0~2"
    assert next_generation_id("catalog-v1-0~2") == "catalog-v1-0~3"


def test_nothing_to_do_when_what_runs_is_what_the_spec_says() -> None:
    assert plan_rollout(SPEC, running(SPEC)) == ()
    assert describe(()) == "nothing to start or stop"


def test_a_changed_deployment_is_replaced_one_instance_at_a_time() -> None:
    new = with_service(SPEC, attrs.evolve(CATALOG, env={"FLAVOUR": "new"}))
    steps = plan_rollout(new, running(SPEC))
    assert steps == (
        StartInstance(instance_id="catalog-v1-0~2", name="catalog-v1-0", key="catalog-v1"),
        WaitHealthy(instance_id="catalog-v1-0~2"),
        Retire(instance_id="catalog-v1-0"),
        WaitDrained(instance_id="catalog-v1-0"),
        StopInstance(instance_id="catalog-v1-0"),
        StartInstance(instance_id="catalog-v1-1~2", name="catalog-v1-1", key="catalog-v1"),
        WaitHealthy(instance_id="catalog-v1-1~2"),
        Retire(instance_id="catalog-v1-1"),
        WaitDrained(instance_id="catalog-v1-1"),
        StopInstance(instance_id="catalog-v1-1"),
    )
    assert describe(steps) == "replace catalog-v1-0, replace catalog-v1-1"


def test_a_forced_deployment_is_replaced_although_its_spec_is_the_same() -> None:
    slots = running(SPEC)
    slots["frontend-0"] = RunningSlot(instance_id="frontend-0~3", deployment=FRONTEND)
    steps = plan_rollout(SPEC, slots, forced=frozenset({"frontend"}))
    assert steps[0] == StartInstance(instance_id="frontend-0~4", name="frontend-0", key="frontend")
    assert steps[-1] == StopInstance(instance_id="frontend-0~3")
    assert len(steps) == 5


def test_scaling_starts_and_stops_only_the_difference() -> None:
    up = plan_rollout(with_service(SPEC, attrs.evolve(CATALOG, replicas=3)), running(SPEC))
    assert up == (
        StartInstance(instance_id="catalog-v1-2", name="catalog-v1-2", key="catalog-v1"),
        WaitHealthy(instance_id="catalog-v1-2"),
    )
    down = plan_rollout(with_service(SPEC, attrs.evolve(CATALOG, replicas=1)), running(SPEC))
    assert down == (
        Retire(instance_id="catalog-v1-1"),
        WaitDrained(instance_id="catalog-v1-1"),
        StopInstance(instance_id="catalog-v1-1"),
    )


def test_new_services_start_in_dependency_order_and_removed_ones_stop_last() -> None:
    reviews = ServiceSpec(name="reviews", command="run-reviews")
    frontend = attrs.evolve(FRONTEND, depends_on=("catalog", "reviews"))
    new = attrs.evolve(SPEC, services=(frontend, CATALOG, reviews), gateway=None)
    slots = running(SPEC)
    del slots["frontend-0"]
    steps = plan_rollout(new, slots)
    starts = [step.instance_id for step in steps if isinstance(step, StartInstance)]
    assert starts == ["reviews-0", "frontend-0"]
    assert steps[-3:] == (
        Retire(instance_id="gateway"),
        WaitDrained(instance_id="gateway"),
        StopInstance(instance_id="gateway"),
    )


# -- what a file change means ---------------------------------------------------


def test_classify_tells_meshfile_edits_from_source_edits() -> None:
    targets = WatchTargets.of(SPEC, ["/src/Meshfile.py", "/src/helpers.py"])
    assert classify(["/src/Meshfile.py"], targets) == Trigger(meshfile=True)
    assert classify(["/src/frontend/app.py"], targets) == Trigger(restart=frozenset({"frontend"}))
    assert classify(["/src/frontend/__pycache__/app.pyc", "/src/other.py"], targets).empty
    assert classify(["/src/frontendish/app.py"], targets).empty
    both = classify(["/src/helpers.py", "/src/frontend"], targets)
    assert both == Trigger(meshfile=True, restart=frozenset({"frontend"}))


def test_a_jwks_file_the_meshfile_names_reloads_it_when_keys_rotate() -> None:
    jwt = JwtSpec(rule=JwtRule(issuer="https://a"), jwks_file="/src/keys/jwks.json")
    targets = WatchTargets.of(
        attrs.evolve(SPEC, request_authentication=(jwt,)), ["/src/Meshfile.py"]
    )
    assert classify(["/src/keys/jwks.json"], targets) == Trigger(meshfile=True)
    assert classify(["/src/keys/other.json"], targets).empty


def test_watch_roots_are_the_meshfile_directories_and_existing_source_paths(
    tmp_path: Path,
) -> None:
    root = tmp_path
    (root / "frontend").mkdir()
    spec = with_service(SPEC, attrs.evolve(FRONTEND, watch=(str(root / "frontend"), "/nowhere")))
    targets = WatchTargets.of(spec, [str(root / "Meshfile.py")])
    assert targets.roots() == [((str(root),), False), ((str(root / "frontend"),), True)]
