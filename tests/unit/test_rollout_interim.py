"""Routes wait for their destinations: the interim spec of a reload that adds versions."""

from __future__ import annotations

import attrs

from meshkit.api import Forward, WeightedVersion
from meshkit.dsl.spec import MeshSpec, RouteSpec, ServiceSpec
from meshkit.runtime.policy.rollout import (
    RunningSlot,
    StartInstance,
    WaitHealthy,
    interim_spec,
    plan_rollout,
    split_fresh_starts,
)

V1 = ServiceSpec(name="catalog", version="v1", command="run-catalog")
V2 = ServiceSpec(name="catalog", version="v2", command="run-catalog")
OLD = MeshSpec(name="shop", file="Meshfile.py", services=(V1,))
SPLIT = RouteSpec(
    service="catalog",
    default=Forward(
        versions=(WeightedVersion(version="v1", weight=80), WeightedVersion(version="v2", weight=20))
    ),
)


def test_new_versions_start_first_under_the_old_routes_then_the_split_applies() -> None:
    new = attrs.evolve(OLD, services=(V1, V2), routes=(SPLIT,))
    running = {"catalog-v1-0": RunningSlot(instance_id="catalog-v1-0", deployment=V1)}
    steps = plan_rollout(new, running)
    fresh, rest = split_fresh_starts(steps)
    assert fresh == (
        StartInstance(instance_id="catalog-v2-0", name="catalog-v2-0", key="catalog-v2"),
        WaitHealthy(instance_id="catalog-v2-0"),
    )
    assert rest == ()
    interim = interim_spec(OLD, new)
    assert interim.routes == () and [svc.key for svc in interim.services] == ["catalog-v1", "catalog-v2"]


def test_replacements_and_stops_come_after_the_fresh_starts() -> None:
    changed = attrs.evolve(V1, env={"FLAVOUR": "new"})
    new = attrs.evolve(OLD, services=(changed, V2))
    running = {"catalog-v1-0": RunningSlot(instance_id="catalog-v1-0", deployment=V1)}
    fresh, rest = split_fresh_starts(plan_rollout(new, running))
    assert [step.instance_id for step in fresh] == ["catalog-v2-0", "catalog-v2-0"]
    assert isinstance(rest[0], StartInstance) and rest[0].instance_id == "catalog-v1-0~2"
    removed = interim_spec(attrs.evolve(OLD, routes=(SPLIT,)), attrs.evolve(OLD, services=(V2,)))
    assert [svc.key for svc in removed.services] == ["catalog-v2", "catalog-v1"]
    assert removed.routes == (SPLIT,)


def test_a_path_seen_twice_unchanged_is_acted_on_once() -> None:
    from meshkit.runtime.watch import ChangeMemory

    looks = {"/p/app.py": (1, 10)}
    memory = ChangeMemory(signature=lambda path: looks.get(path))
    assert memory.fresh(["/p/app.py"]) == {"/p/app.py"}
    assert memory.fresh(["/p/app.py"]) == set()  # the other watcher's copy of that save
    looks["/p/app.py"] = (2, 12)
    assert memory.fresh(["/p/app.py", "/p/gone.py"]) == {"/p/app.py", "/p/gone.py"}
    assert memory.fresh(["/p/gone.py"]) == set()
