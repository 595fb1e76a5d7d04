"""``meshkit up`` as a function: run a mesh until it is asked to stop.

``run_mesh(spec, options)`` owns everything of one run: the state directory
(``.meshkit/{run,logs}``), the pidfile, the orphan guardian, the registry and
its control API, the compile loop that keeps every sidecar's config current,
and one ``InstanceRunner`` per instance (plus the gateway's).

Identity: the mesh's root CA lives in ``.meshkit/ca/`` (created on the first
run, reused after; a key file others can read stops ``meshkit up`` with exit 1
before anything starts); the issuer signs each sidecar's certificate through
the control API, with the Meshfile's ``cert_lifetime``.

Start: services in dependency order, each waiting for a healthy instance of
every service it depends on.  Stop (``POST /v1/down``, SIGINT, SIGTERM): the
gateway first, then services in reverse dependency order, each process with
SIGTERM then SIGKILL after the grace period; a second SIGINT kills at once.
The return value is the process exit status: 0 after ``meshkit down``, 130
after SIGINT, 143 after SIGTERM, 1 if the mesh could not start.

Reload: ``options.spec_transform`` is applied to ``spec`` before anything
starts and to every re-evaluated Meshfile (``meshkit.runtime.reload``); with
``options.watch`` the Meshfile, the modules it imports (``options.files``)
and the services' ``watch`` paths are watched (``meshkit.runtime.watch``);
``POST /v1/reload`` re-reads the Meshfile in any case;
``POST /v1/services/<service>/restart`` replaces the service's instances one
by one through the same machinery.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import attrs
import trio

from meshkit.ca.errors import CaError
from meshkit.ca.issuer import Issuer
from meshkit.ca.root import RootCA
from meshkit.dsl.evaluate.warm import WarmEvaluator
from meshkit.dsl.spec import MeshSpec
from meshkit.observe.otlp import OtlpExporter, check_otlp_url
from meshkit.observe.server import ObserveServer
from meshkit.observe.spans import SpanStore
from meshkit.registry.compile import compile_configs
from meshkit.registry.server.api import ControlServer
from meshkit.registry.server.changes import RegistryChanges
from meshkit.registry.state import GATEWAY_INSTANCE, InstanceRecord, Registry
from meshkit.registry.status import gateway_url, mesh_ready
from meshkit.runtime.fleet import Fleet, FleetTimeouts
from meshkit.runtime.lineage import Owners, become_subreaper
from meshkit.runtime.logs import LogHub
from meshkit.runtime.policy.plan import PlanError, startup_order
from meshkit.runtime.ports import GatewayPorts, PortAllocator, port_in_use_message
from meshkit.runtime.process import GroupGuard, GuardianLink, NoGuard
from meshkit.runtime.reload import (
    Reloader,
    ReloadOutcome,
    SpecTransform,
    SpecTransformError,
    identity_transform,
)
from meshkit.runtime.supervisor import SupervisorContext
from meshkit.runtime.template import SidecarTemplate
from meshkit.runtime.template_start import StartedTemplate
from meshkit.runtime.watch import watch_and_reload

EXIT_DOWN = 0
EXIT_FAILED = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class _UnderState:
    """A ``StatePaths`` attribute: the path ``relative`` under its ``state_dir``."""

    def __init__(self, relative: str) -> None:
        self.relative = relative

    def __get__(self, paths: StatePaths, owner: type[StatePaths]) -> Path:
        return paths.state_dir / self.relative


@attrs.frozen(kw_only=True)
class StatePaths:
    """The files of one mesh run under its state directory (``.meshkit/``)."""

    state_dir: Path

    run_dir = _UnderState("run")
    logs_dir = _UnderState("logs")
    ca_dir = _UnderState("ca")
    control_socket = _UnderState("run/control.sock")
    pidfile = _UnderState("run/meshkit.pid")

    def running_pid(self) -> int | None:
        """The pid of a live ``meshkit up`` using this state directory, if any."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid


@attrs.frozen(kw_only=True)
class UpOptions:
    state_dir: Path
    base_dir: Path
    meshfile: str
    grace: float = 10.0
    sidecar_ready_timeout: float = 15.0
    terminal: IO[str] | None = None
    handle_signals: bool = True
    use_guardian: bool = True
    sidecar_argv: tuple[str, ...] = (sys.executable, "-m", "meshkit.proxy")
    # Applied to the first spec and to every re-evaluated one (--gateway-port, --ingress, ...).
    spec_transform: SpecTransform | None = None
    watch: bool = False
    # The Meshfile and the local modules it imported (EvalResult.files): what to watch.
    files: tuple[str, ...] = ()
    timeouts: FleetTimeouts = attrs.field(factory=FleetTimeouts)
    # The dashboard's and the mesh's Prometheus endpoint's port on 127.0.0.1 (0: any free one).
    observe_port: int = 0
    # Where to export spans over OTLP/HTTP too (None: kept by the control plane only).
    otlp_url: str | None = None
    # Show the sidecars' access-log lines on the terminal too (always in the log files).
    show_access: bool = False
    # The sidecar template, started before the Meshfile was evaluated (None: spawn
    # every sidecar); run_mesh supervises it, or closes it if it cannot use it.
    template: StartedTemplate | None = None


class StopRequest:
    """The first reason to stop wins; it fixes the exit status."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.exit_code = EXIT_DOWN
        self.reason = ""

    def request(self, exit_code: int, reason: str) -> bool:
        if self.event.is_set():
            return False
        self.exit_code = exit_code
        self.reason = reason
        self.event.set()
        return True


def build_registry(spec: MeshSpec, ports: PortAllocator) -> Registry:
    """A registry holding every instance of ``spec`` (and its gateway), stopped."""
    registry = Registry(mesh=spec.name)
    for deployment in spec.services:
        for instance_id in deployment.instance_ids():
            registry.add(
                InstanceRecord(
                    id=instance_id,
                    service=deployment.name,
                    version=deployment.version,
                    port=ports.allocate(),
                )
            )
    if spec.gateway is not None:
        registry.add(InstanceRecord(id=GATEWAY_INSTANCE, service=GATEWAY_INSTANCE, kind="gateway"))
    return registry


def prepare_state_dir(paths: StatePaths) -> None:
    for directory in (paths.state_dir, paths.run_dir, paths.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)


async def run_mesh(spec: MeshSpec, options: UpOptions) -> int:
    """Run ``spec`` until stopped; return the exit status (see the module docstring)."""
    terminal = sys.stdout if options.terminal is None else options.terminal
    paths = StatePaths(state_dir=options.state_dir)
    gateway_ports = GatewayPorts()
    user_transform = options.spec_transform or identity_transform

    def transform(spec: MeshSpec) -> MeshSpec:
        return gateway_ports.pin(user_transform(spec))

    try:
        spec = transform(spec)
        startup_order(spec)
        if options.otlp_url is not None:
            check_otlp_url(options.otlp_url)
    except (PlanError, SpecTransformError, ValueError) as exc:
        terminal.write(f"meshkit: {exc}\n")
        return EXIT_FAILED
    prepare_state_dir(paths)
    other = paths.running_pid()
    if other is not None and other != os.getpid():
        terminal.write(
            f"meshkit: a mesh is already running from {paths.state_dir} (pid {other}); "
            "stop it with 'meshkit down'\n"
        )
        return EXIT_FAILED
    taken = port_in_use_message(spec)
    if taken is not None:
        terminal.write(f"meshkit: {taken}\n")
        return EXIT_FAILED
    try:
        root = RootCA.load_or_create(paths.ca_dir, mesh=spec.name)
    except (CaError, OSError, ValueError) as exc:
        terminal.write(f"meshkit: cannot use the mesh's root CA: {exc}\n")
        return EXIT_FAILED
    paths.pidfile.write_text(f"{os.getpid()}\n")
    logs = LogHub(paths.logs_dir, terminal=terminal, show_access=options.show_access)
    guard: GroupGuard = NoGuard()
    guardian: GuardianLink | None = None
    started = options.template
    owners = Owners() if started is None else started.owners
    # Sidecars forked from the template are adopted by this process (a subreaper).
    if not become_subreaper() and started is not None:
        started.abandon()
        started = None
    template: SidecarTemplate | None = None
    try:
        if options.use_guardian:
            guardian = await GuardianLink.start(owners)
            guard = guardian
        if started is not None:
            template = await SidecarTemplate.adopt(started, guard=guard, say=logs.announce)
        # Every reloaded spec gets the same transform, gateway ports pinned included.
        options = attrs.evolve(options, spec_transform=transform)
        issuer = Issuer(root=root)
        return await _run(spec, options, paths, logs, guard, issuer, owners, template)
    finally:
        if template is not None:
            await template.close(grace=options.grace)
        if guardian is not None:
            await guardian.close()
        logs.close()
        paths.pidfile.unlink(missing_ok=True)


async def _run(
    spec: MeshSpec,
    options: UpOptions,
    paths: StatePaths,
    logs: LogHub,
    guard: GroupGuard,
    issuer: Issuer,
    owners: Owners,
    template: SidecarTemplate | None,
) -> int:
    ports = PortAllocator()
    registry = build_registry(spec, ports)
    changes = RegistryChanges(registry)
    registry.publish(compile_configs(spec, registry).values())
    stop = StopRequest()
    ctx = SupervisorContext(
        registry=registry,
        changes=changes,
        logs=logs,
        guard=guard,
        control_socket=paths.control_socket,
        base_dir=options.base_dir,
        grace=options.grace,
        sidecar_ready_timeout=options.sidecar_ready_timeout,
        sidecar_argv=options.sidecar_argv,
        issuer=issuer,
        owners=owners,
        template=template,
    )
    reloader: Reloader | None = None

    async def unless_stopping(
        run: Callable[[Reloader], Awaitable[ReloadOutcome]],
    ) -> dict[str, object]:
        """``run`` on the reloader for the control API, given up if the mesh stops meanwhile."""
        if reloader is None:
            return {"applied": False, "error": "the mesh is still starting; try again"}
        answer: dict[str, object] = {"applied": False, "error": "the mesh is stopping"}
        async with trio.open_nursery() as nursery:

            async def give_up_on_stop() -> None:
                await stop.event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(give_up_on_stop)
            answer = (await run(reloader)).to_dict()
            nursery.cancel_scope.cancel()
        return answer

    async def reload_now() -> dict[str, object]:
        """Reload for ``POST /v1/reload``."""
        return await unless_stopping(lambda reloader: reloader.reload(reason="meshkit reload"))

    async def restart_now(service: str) -> dict[str, object]:
        """A rolling restart of ``service`` for ``POST /v1/services/<service>/restart``."""

        def restart(reloader: Reloader) -> Awaitable[ReloadOutcome]:
            forced = frozenset(svc.key for svc in reloader.fleet.spec.deployments_of(service))
            why = f"meshkit restart {service}"
            return reloader.reload(meshfile=False, forced=forced, reason=why, forced_because=why)

        return await unless_stopping(restart)

    exporter = None if options.otlp_url is None else OtlpExporter(options.otlp_url)
    spans = SpanStore(on_added=None if exporter is None else exporter.offer)
    server = ControlServer(
        registry,
        meshfile=options.meshfile,
        changes=changes,
        on_down=lambda: _request_stop(stop, logs, EXIT_DOWN, "meshkit down"),
        on_reload=reload_now,
        on_restart=restart_now,
        issuer=issuer,
        cert_lifetime=spec.cert_lifetime,
        announce=logs.announce,
        on_spans=spans.add,
    )

    def applied(new_spec: MeshSpec) -> None:
        server.cert_lifetime = new_spec.cert_lifetime

    observe = ObserveServer(
        registry, spans=spans, control=server, run_dir=paths.run_dir, port=options.observe_port
    )
    async with trio.open_nursery() as services:
        await services.start(server.serve, paths.control_socket)
        services.start_soon(logs.tail_files)
        await services.start(observe.serve)
        if exporter is not None:
            services.start_soon(exporter.run)
        logs.announce(
            f"meshkit: dashboard {observe.dashboard_url} · Prometheus {observe.base_url}/metrics"
        )
        if options.handle_signals:
            services.start_soon(_watch_signals, stop, ctx.hurry, logs)
        async with (
            WarmEvaluator(options.meshfile, forker=template) as evaluate,
            trio.open_nursery() as runners,
        ):
            fleet = Fleet(ctx, spec, ports=ports, nursery=runners, timeouts=options.timeouts)
            reloader = Reloader(
                fleet,
                meshfile=options.meshfile,
                files=options.files,
                transform=options.spec_transform or identity_transform,
                on_applied=applied,
                evaluate=evaluate,
                prepare_next=evaluate.prepare,
            )
            services.start_soon(_keep_configs_compiled, fleet, changes)
            services.start_soon(_announce_ready, spec, registry, changes, logs)
            async with trio.open_nursery() as control:
                control.start_soon(_start_then_warm, reloader, evaluate)
                if options.watch:
                    control.start_soon(watch_and_reload, reloader)
                await stop.event.wait()
                control.cancel_scope.cancel()
            await fleet.stop_all()
        services.cancel_scope.cancel()
    logs.announce(f"meshkit: mesh '{spec.name}' stopped")
    return stop.exit_code


async def _start_then_warm(reloader: Reloader, evaluate: WarmEvaluator) -> None:
    """Start the mesh, then the evaluator child of the first reload (not while starting)."""
    await reloader.start()
    await evaluate.prepare()


def _request_stop(stop: StopRequest, logs: LogHub, exit_code: int, reason: str) -> None:
    if stop.request(exit_code, reason):
        logs.announce(f"meshkit: stopping ({reason})")


async def _keep_configs_compiled(fleet: Fleet, changes: RegistryChanges) -> None:
    """Recompile after every registry change a config depends on (not after each ACK).

    Publishing bumps only what changed; a reload publishes its new spec itself.
    """
    seen = changes.generation
    compiled = -1
    while True:
        seen = await changes.wait_beyond(seen)
        if fleet.registry.inputs_generation != compiled:
            compiled = fleet.registry.inputs_generation
            fleet.publish()
        seen = max(seen, changes.generation)


async def _announce_ready(
    spec: MeshSpec, registry: Registry, changes: RegistryChanges, logs: LogHub
) -> None:
    await changes.wait_until(mesh_ready)
    url = gateway_url(registry)
    where = f"gateway {url}" if url is not None else "no gateway"
    logs.announce(f"meshkit: mesh '{spec.name}' ready: {where}")


async def _watch_signals(stop: StopRequest, hurry: trio.Event, logs: LogHub) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not stop.event.is_set():
                code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
                reason = "Ctrl-C; Ctrl-C again kills everything now"
                _request_stop(stop, logs, code, reason if signum == signal.SIGINT else "SIGTERM")
            elif signum == signal.SIGINT and not hurry.is_set():
                logs.announce("meshkit: second Ctrl-C: killing every process now")
                hurry.set()
