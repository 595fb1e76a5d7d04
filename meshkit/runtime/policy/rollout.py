"""The plan of a reload: which instances start, get replaced or stop, step by step.  Pure.

``plan_rollout(spec, running, forced=...)`` compares what runs (one
``RunningSlot`` per stable instance name, with the deployment its processes
were started from) with the new spec and returns the steps that take the mesh
there.  A thin trio layer (``meshkit.runtime.fleet``) executes them in order.

A replacement never leaves a gap in a service: for each instance in turn

    start the new one    (``catalog-v1-0~2``: same name, next generation)
    wait until healthy   (and every sidecar acknowledged a config that has it)
    retire the old one   (out of every cluster: publish configs without it)
    wait until drained   (every sidecar acknowledged a config without it)
    stop the old one     (sidecar first, finishing its in-flight requests)

so with two or more replicas the service serves throughout, and even a single
replica has its successor receiving traffic before it stops.  New deployments
start in dependency order, each waiting for health; removed instances are
retired and drained before they stop.

Routes wait for their destinations: while new instances start (the leading
steps, ``split_fresh_starts``), the mesh runs ``interim_spec``: the new
deployments with the old routes, policies and gateway, so a save that adds
``v2`` and ``split(v1=80, v2=20)`` sends nothing to ``v2`` before it is
healthy and known to every caller; the new routes are published after that,
and only then are instances replaced or stopped.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from meshkit.dsl.spec import MeshSpec, ServiceSpec
from meshkit.registry.diff import restart_reasons
from meshkit.registry.state import GATEWAY_INSTANCE, GENERATION_SEPARATOR
from meshkit.runtime.policy.plan import startup_order


@attrs.frozen(kw_only=True)
class RunningSlot:
    """What runs under a stable name: its current instance id and its deployment."""

    instance_id: str
    deployment: ServiceSpec | None  # None for the gateway


@attrs.frozen(kw_only=True)
class StartInstance:
    instance_id: str
    name: str  # the stable name (``catalog-v1-0``)
    key: str | None  # the deployment key in the new spec; None for the gateway


@attrs.frozen(kw_only=True)
class _OnInstance:
    """A step about one instance that already has its id."""

    instance_id: str


class WaitHealthy(_OnInstance):
    """Wait until the instance is healthy and every sidecar acknowledged a config with it."""


class Retire(_OnInstance):
    """Take the instance out of every cluster (publish configs without it)."""


class WaitDrained(_OnInstance):
    """Wait until every sidecar acknowledged a config without the instance."""


class StopInstance(_OnInstance):
    """Stop the instance, its sidecar first (finishing its in-flight requests)."""


Step = StartInstance | WaitHealthy | Retire | WaitDrained | StopInstance


def next_generation_id(instance_id: str) -> str:
    """``catalog-v1-0`` -> ``catalog-v1-0~2``; ``catalog-v1-0~2`` -> ``catalog-v1-0~3``."""
    name, separator, generation = instance_id.partition(GENERATION_SEPARATOR)
    current = int(generation) if separator and generation.isdigit() else 1
    return f"{name}{GENERATION_SEPARATOR}{current + 1}"


def replace(old_id: str, *, name: str, key: str) -> tuple[Step, ...]:
    new_id = next_generation_id(old_id)
    return (
        StartInstance(instance_id=new_id, name=name, key=key),
        WaitHealthy(instance_id=new_id),
        *retire(old_id),
    )


def retire(instance_id: str) -> tuple[Step, ...]:
    return (
        Retire(instance_id=instance_id),
        WaitDrained(instance_id=instance_id),
        StopInstance(instance_id=instance_id),
    )


def plan_rollout(
    spec: MeshSpec,
    running: Mapping[str, RunningSlot],
    *,
    forced: frozenset[str] = frozenset(),
) -> tuple[Step, ...]:
    """The steps from ``running`` to ``spec``.

    ``forced`` names deployment keys to replace even though their spec did not
    change (a source file under their ``watch`` paths changed).  Starts come
    first (dependency order), then replacements, then stops.
    """
    starts: list[Step] = []
    replacements: list[Step] = []
    stops: list[Step] = []
    wanted: set[str] = set()
    for service in startup_order(spec):
        for deployment in spec.deployments_of(service):
            fresh: list[str] = []
            for name in deployment.instance_ids():
                wanted.add(name)
                slot = running.get(name)
                if slot is None:
                    starts.append(StartInstance(instance_id=name, name=name, key=deployment.key))
                    fresh.append(name)
                elif _must_replace(slot, deployment, forced):
                    replacements.extend(replace(slot.instance_id, name=name, key=deployment.key))
            starts.extend(WaitHealthy(instance_id=name) for name in fresh)
    if spec.gateway is not None:
        wanted.add(GATEWAY_INSTANCE)
        if GATEWAY_INSTANCE not in running:
            starts.append(
                StartInstance(instance_id=GATEWAY_INSTANCE, name=GATEWAY_INSTANCE, key=None)
            )
    for name, slot in running.items():
        if name not in wanted:
            stops.extend(retire(slot.instance_id))
    return (*starts, *replacements, *stops)


def _must_replace(slot: RunningSlot, deployment: ServiceSpec, forced: frozenset[str]) -> bool:
    if slot.deployment is None:
        return False
    return deployment.key in forced or bool(restart_reasons(slot.deployment, deployment))


def describe(steps: tuple[Step, ...]) -> str:
    """The plan for people: ``start catalog-v3-0, replace catalog-v1-0, stop reviews-0``."""
    parts: list[str] = []
    for step in steps:
        if isinstance(step, StartInstance):
            is_replacement = step.instance_id != step.name
            parts.append(f"{'replace' if is_replacement else 'start'} {step.name}")
        elif isinstance(step, StopInstance) and not any(
            isinstance(other, StartInstance)
            and other.name == step.instance_id.partition(GENERATION_SEPARATOR)[0]
            for other in steps
        ):
            parts.append(f"stop {step.instance_id}")
    return ", ".join(parts) if parts else "nothing to start or stop"


def split_fresh_starts(steps: tuple[Step, ...]) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """The leading steps that start new names (and wait for them), and the rest."""
    count = 0
    for step in steps:
        fresh_start = isinstance(step, StartInstance) and step.instance_id == step.name
        fresh_wait = isinstance(step, WaitHealthy) and GENERATION_SEPARATOR not in step.instance_id
        if not (fresh_start or fresh_wait):
            break
        count += 1
    return steps[:count], steps[count:]


def interim_spec(old: MeshSpec, new: MeshSpec) -> MeshSpec:
    """What runs while new instances start: every deployment of both, the old traffic rules."""
    keys = {svc.key for svc in new.services}
    return attrs.evolve(
        new,
        services=(*new.services, *(svc for svc in old.services if svc.key not in keys)),
        routes=old.routes,
        policies=old.policies,
        gateway=new.gateway if old.gateway is None else old.gateway,
    )
