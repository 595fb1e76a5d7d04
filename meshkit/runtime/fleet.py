"""The instances a mesh runs, and the thin trio layer that executes rollout plans.

A ``Fleet`` owns one ``InstanceRunner`` per running instance (in a nursery its
caller owns), the spec the mesh runs now, and the port allocator.  It starts
and stops instances, publishes the configs compiled from its spec, and
executes the steps of ``meshkit.runtime.policy.rollout`` one after the other; the
decisions are all in the plan.

Waiting for sidecars: after every change that moves traffic (a new instance
healthy, an old one retired) the fleet publishes and waits until every live
sidecar acknowledged its newest config (``Registry.in_sync``), so that, e.g.,
no sidecar still sends new requests to an instance about to stop.  A sidecar
that does not answer within ``settle_timeout`` is reported, not waited for.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import trio

from meshkit.dsl.spec import MeshSpec, ServiceSpec
from meshkit.registry.compile import compile_configs
from meshkit.registry.state import GATEWAY_INSTANCE, InstanceRecord, Registry
from meshkit.runtime.policy.plan import dependencies_of, startup_order
from meshkit.runtime.policy.rollout import (
    Retire,
    RunningSlot,
    StartInstance,
    Step,
    StopInstance,
    WaitDrained,
    WaitHealthy,
)
from meshkit.runtime.ports import PortAllocator
from meshkit.runtime.supervisor import InstanceRunner, SupervisorContext

LIVE_STATES = ("starting", "healthy", "unhealthy")


@attrs.frozen(kw_only=True)
class FleetTimeouts:
    healthy: float = 60.0  # a new instance may take this long to become healthy
    settle: float = 10.0  # every sidecar should acknowledge a config within this


@attrs.define(eq=False)
class Fleet:
    """Every runner of one mesh; use from the one task that changes the mesh at a time."""

    ctx: SupervisorContext
    spec: MeshSpec
    ports: PortAllocator = attrs.field(kw_only=True)
    nursery: trio.Nursery = attrs.field(kw_only=True)
    timeouts: FleetTimeouts = attrs.field(kw_only=True, default=FleetTimeouts())
    runners: dict[str, InstanceRunner] = attrs.field(init=False, factory=dict)

    @property
    def registry(self) -> Registry:
        return self.ctx.registry

    def publish(self) -> list[str]:
        """Compile the current spec against the registry and publish; the ids bumped."""
        return self.registry.publish(compile_configs(self.spec, self.registry).values())

    def running_slots(self) -> dict[str, RunningSlot]:
        """What runs under each stable name (the newest generation, retiring ones aside)."""
        slots: dict[str, RunningSlot] = {}
        for instance_id, runner in self.runners.items():
            record = self.registry.get(instance_id)
            if record.retiring:
                continue
            current = slots.get(record.name)
            if current is None or self.registry.get(current.instance_id).generation < (
                record.generation
            ):
                slots[record.name] = RunningSlot(
                    instance_id=instance_id, deployment=runner.deployment
                )
        return slots

    # -- starting ------------------------------------------------------------

    async def start_all(self) -> None:
        """Start the spec's services in dependency order, each after its dependencies are healthy."""
        order = startup_order(self.spec)
        for name in order:
            deps = [dep for dep in dependencies_of(self.spec, name) if dep in order]

            def deps_healthy(reg: Registry, deps: list[str] = deps) -> bool:
                return all(reg.healthy_instances_of(dep) for dep in deps)

            if not deps_healthy(self.registry):
                self.ctx.logs.announce(f"meshkit: {name} waits for {', '.join(deps)} to be healthy")
                await self.ctx.changes.wait_until(deps_healthy)
            for deployment in self.spec.deployments_of(name):
                for instance_id in deployment.instance_ids():
                    if instance_id not in self.runners:
                        await self.start(instance_id, deployment)
        if self.spec.gateway is not None and GATEWAY_INSTANCE not in self.runners:
            await self.start(GATEWAY_INSTANCE, None)

    async def start(
        self, instance_id: str, deployment: ServiceSpec | None, *, reason: str | None = None
    ) -> None:
        """Register (if new) and start one instance; ``deployment`` None is the gateway.

        ``reason`` says why it starts (``meshkit status`` shows it).
        """
        if instance_id not in self.registry:
            if deployment is None:
                record = InstanceRecord(
                    id=instance_id, service=GATEWAY_INSTANCE, kind="gateway", reason=reason
                )
            else:
                record = InstanceRecord(
                    id=instance_id,
                    service=deployment.name,
                    version=deployment.version,
                    port=self.ports.allocate(),
                    reason=reason,
                )
            self.registry.add(record)
            self.publish()
        runner = InstanceRunner(
            self.ctx,
            instance_id=instance_id,
            deployment=deployment,
            port=self.registry.get(instance_id).port,
            ports=self.ports,
        )
        await self.nursery.start(runner.run)
        self.runners[instance_id] = runner

    # -- stopping ------------------------------------------------------------

    async def stop(self, instance_id: str, *, drain: bool) -> None:
        """Stop one instance and forget it (its port goes back to the allocator)."""
        runner = self.runners.pop(instance_id)
        await runner.stop(drain=drain)
        record = self.registry.get(instance_id)
        self.registry.remove(instance_id)
        if record.port is not None:
            self.ports.release(record.port)
        self.publish()

    async def stop_all(self) -> None:
        """The gateway first, then every service once the services that depend on it stopped.

        Independent services stop in parallel, so a mesh of slow-to-stop apps
        takes one grace period per level of dependency, not one per instance.
        """
        by_service: dict[str, list[InstanceRunner]] = {}
        for instance_id, runner in self.runners.items():
            by_service.setdefault(self.registry.get(instance_id).service, []).append(runner)
        await self._stop_group(by_service.pop(GATEWAY_INSTANCE, []))
        stopped = {service: trio.Event() for service in by_service}
        dependents: dict[str, list[str]] = {service: [] for service in by_service}
        for service in by_service:
            for dep in dependencies_of(self.spec, service):
                if dep in dependents and dep != service:
                    dependents[dep].append(service)

        async def stop_service(service: str) -> None:
            for dependent in dependents[service]:
                await stopped[dependent].wait()
            await self._stop_group(by_service[service])
            stopped[service].set()

        async with trio.open_nursery() as nursery:
            for service in by_service:
                nursery.start_soon(stop_service, service)

    @staticmethod
    async def _stop_group(runners: list[InstanceRunner]) -> None:
        async with trio.open_nursery() as nursery:
            for runner in runners:
                nursery.start_soon(runner.stop)

    # -- rollouts ------------------------------------------------------------

    async def execute(
        self, steps: tuple[Step, ...], *, reasons: Mapping[str, str] | None = None
    ) -> list[str]:
        """Carry out a rollout plan against ``self.spec``; the problems met (empty: none).

        ``reasons`` says, by deployment key, why its instances start.

        A replacement that does not become healthy is stopped and the instance
        it was to replace keeps running; the rest of the plan goes on.
        """
        problems: list[str] = []
        deployments = {svc.key: svc for svc in self.spec.services}
        abandoned = False
        for step in steps:
            if isinstance(step, StartInstance):
                abandoned = False
                deployment = None if step.key is None else deployments[step.key]
                why = None if step.key is None else (reasons or {}).get(step.key)
                await self.start(step.instance_id, deployment, reason=why)
            elif abandoned:
                continue
            elif isinstance(step, WaitHealthy):
                if not await self.wait_healthy(step.instance_id):
                    problems.append(
                        f"{step.instance_id} did not become healthy within "
                        f"{self.timeouts.healthy:g}s"
                    )
                    if self.registry.get(step.instance_id).generation > 1:
                        await self.stop(step.instance_id, drain=False)
                        abandoned = True
            elif isinstance(step, Retire):
                self.registry.update(step.instance_id, retiring=True)
                self.publish()
            elif isinstance(step, WaitDrained):
                if not await self.wait_in_sync():
                    problems.append(self.unsynced_message())
            elif isinstance(step, StopInstance):
                await self.stop(step.instance_id, drain=True)
        return problems

    async def wait_healthy(self, instance_id: str) -> bool:
        """Healthy, in every cluster, and every sidecar told so; False after the timeout."""

        def ready(registry: Registry) -> bool:
            record = registry.get(instance_id)
            if record.kind == "gateway":
                return record.sidecar_ready
            return record.state == "healthy" and record.inbound_port is not None

        if not await self.ctx.changes.wait_until(ready, timeout=self.timeouts.healthy):
            return False
        self.publish()
        await self.wait_in_sync()
        return True

    def live_sidecars(self) -> list[InstanceRecord]:
        return [
            record
            for record in self.registry.instances()
            if record.sidecar_ready and record.state in LIVE_STATES
        ]

    async def wait_in_sync(self) -> bool:
        """Wait until every live sidecar answered its newest config; False after the timeout."""

        def synced(registry: Registry) -> bool:
            return all(registry.in_sync(record.id) for record in self.live_sidecars())

        return await self.ctx.changes.wait_until(synced, timeout=self.timeouts.settle)

    def nacks(self) -> list[str]:
        """One line per live sidecar that refused its newest config."""
        lines = []
        for record in self.live_sidecars():
            ack = self.registry.ack_of(record.id)
            if ack is not None and ack.error is not None:
                lines.append(f"{record.id} NACKed config version {ack.version}: {ack.error}")
        return lines

    def unsynced_message(self) -> str:
        late = [rec.id for rec in self.live_sidecars() if not self.registry.in_sync(rec.id)]
        return f"{', '.join(late)} did not acknowledge config within {self.timeouts.settle:g}s"
