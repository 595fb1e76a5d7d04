"""Supervision of one instance: its sidecar, its app, health checks and restarts.

An ``InstanceRunner`` starts the sidecar first and waits for its ``/ready``
report, then the app with the environment of the mesh contract, then probes
the app; a probe counts as passed only if every socket listening on ``$PORT``
belongs to the app's processes (``port_squatter``: another process that took
the port first would otherwise receive the instance's traffic).  When the app exits, it is restarted per its restart policy (the
sidecar keeps running); when the sidecar exits, the app is stopped and both
start again, since the app's environment names the sidecar's ports.  The
gateway's runner has no app: its sidecar is the whole instance.

Every state change goes through the registry, which is how the rest of the
control plane (compile, control API, status) learns about it.

Rolling restarts: a replacement runs under the next generation of its
instance's id (``catalog-v1-0~2``), but its logs go on in the same file and
its app sees the stable name in ``MESHKIT_INSTANCE``.  ``stop(drain=True)``
stops the sidecar first, so that it finishes the requests in flight to its
app, then the app.

Identity: with an issuer, each sidecar spawn gets a fresh one-time token for
its service's SPIFFE ID, written into a pipe whose read end the sidecar
inherits (``MESHKIT_BOOTSTRAP_FD``); the write end is closed before the spawn
and the read end right after, so only that one child can read the token.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from meshkit.api.template import SIDECAR_ENV
from meshkit.ca.exchange import BOOTSTRAP_FD_ENV, IDENTITY_ENV
from meshkit.ca.issuer import Issuer
from meshkit.ca.spiffe import spiffe_id
from meshkit.dsl.spec import RestartPolicy, ServiceSpec
from meshkit.registry.server.changes import RegistryChanges
from meshkit.registry.state import GENERATION_SEPARATOR, InstanceState, Registry
from meshkit.runtime.lineage import Owners
from meshkit.runtime.logs import LogHub
from meshkit.runtime.policy.health import ProbeStateMachine, ProbeVerdict, check_for
from meshkit.runtime.policy.restart import RestartBackoff
from meshkit.runtime.ports import (
    PortAllocator,
    is_free,
    listening_ports,
    port_holder,
    port_squatter,
)
from meshkit.runtime.probes import run_prober
from meshkit.runtime.process import (
    Forker,
    GroupGuard,
    ManagedProcess,
    ProcessSpec,
    ProcessStartError,
    shell_argv,
    spawn,
)

LOOPBACK = "127.0.0.1"
LOG_TAIL_LINES = 10
LOG_TAIL_BYTES = 8192
BOUND_PORTS_PERIOD = 1.0


@attrs.frozen(kw_only=True)
class SupervisorContext:
    """What every runner of one mesh shares."""

    registry: Registry
    changes: RegistryChanges
    logs: LogHub
    guard: GroupGuard
    control_socket: Path
    base_dir: Path
    grace: float = 10.0
    sidecar_ready_timeout: float = 15.0
    hurry: trio.Event = attrs.field(factory=trio.Event)
    sidecar_argv: tuple[str, ...] = (sys.executable, "-m", "meshkit.proxy")
    issuer: Issuer | None = None  # None: sidecars run without identity (plaintext)
    owners: Owners = attrs.field(factory=Owners)
    # Sidecars are forked from here when it can (``meshkit.runtime.template``).
    template: Forker | None = None


def env_name(service: str) -> str:
    return service.upper().replace("-", "_")


NO_PROXY_HOSTS = "127.0.0.1,localhost,::1"


def app_environment(
    *,
    deployment: ServiceSpec,
    instance_id: str,
    port: int,
    sidecar_ports: dict[str, int],
    base_env: dict[str, str],
) -> dict[str, str]:
    """The app's environment, exactly as the mesh contract says."""
    env = dict(base_env)
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in (bin_dir, base_env.get("PATH", "")) if p)
    proxy = f"http://{LOOPBACK}:{sidecar_ports['outbound']}"
    env.update(
        PORT=str(port),
        MESHKIT_SERVICE=deployment.name,
        MESHKIT_INSTANCE=instance_id,
        HTTP_PROXY=proxy,
        http_proxy=proxy,
        # <UPSTREAM>_URL points at the sidecar's own loopback ports: proxy-aware
        # clients must reach those directly, not through HTTP_PROXY.
        NO_PROXY=NO_PROXY_HOSTS,
        no_proxy=NO_PROXY_HOSTS,
        PYTHONUNBUFFERED="1",
    )
    if deployment.version is not None:
        env["MESHKIT_VERSION"] = deployment.version
    for upstream in deployment.upstreams:
        upstream_port = sidecar_ports[f"upstream:{upstream}"]
        env[f"{env_name(upstream)}_URL"] = f"http://{LOOPBACK}:{upstream_port}"
        env[f"{env_name(upstream)}_ADDR"] = f"{LOOPBACK}:{upstream_port}"
    env.update(deployment.env)
    return env


class InstanceRunner:
    """Runs one instance until ``stop`` is called.  Use ``nursery.start(runner.run)``."""

    def __init__(
        self,
        ctx: SupervisorContext,
        *,
        instance_id: str,
        deployment: ServiceSpec | None,
        port: int | None,
        ports: PortAllocator | None = None,
    ) -> None:
        self.ctx = ctx
        self.instance_id = instance_id
        self.deployment = deployment
        self.port = port
        self._ports = ports  # where a fresh $PORT comes from when another process took this one
        self.sidecar: ManagedProcess | None = None
        self.app: ManagedProcess | None = None
        self._loop_scope = trio.CancelScope()
        self._loop_done = trio.Event()
        self._stopped = trio.Event()
        self.name = instance_id.partition(GENERATION_SEPARATOR)[0]
        colour_key = deployment.name if deployment is not None else instance_id
        # Every generation of a name writes on in the same files (the stable name's).
        self._app_log = (
            None
            if deployment is None
            else ctx.logs.follow(file_stem=self.name, colour_key=colour_key)
        )
        self._sidecar_log = ctx.logs.follow(file_stem=f"{self.name}.proxy", colour_key=colour_key)
        policy = deployment.restart_policy if deployment is not None else RestartPolicy()
        self.backoff = RestartBackoff(policy)

    @property
    def registry(self) -> Registry:
        return self.ctx.registry

    def say(self, message: str) -> None:
        self.ctx.logs.announce(f"meshkit: {self.instance_id}: {message}")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        with self._loop_scope:
            await self._supervise()
        self._loop_done.set()
        await self._stopped.wait()

    async def stop(self, *, drain: bool = False) -> None:
        """Stop probing and restarting; stop the app, then the sidecar (grace, then SIGKILL).

        With ``drain``, the sidecar stops first: it refuses new connections and
        lets the requests in flight to the app finish before the app stops.
        """
        with trio.CancelScope(shield=True):
            self._loop_scope.cancel()
            await self._loop_done.wait()
            order = (self.sidecar, self.app) if drain else (self.app, self.sidecar)
            for process in order:
                if process is not None:
                    await process.stop(grace=self.ctx.grace, hurry=self.ctx.hurry)
            self.registry.update(self.instance_id, pid=None, sidecar_pid=None)
            self._move_to("stopped")
            self._stopped.set()

    def _move_to(self, state: InstanceState, error: str | None = None) -> None:
        record = self.registry.get(self.instance_id)
        if record.state == state:
            return
        if record.state in ("healthy", "unhealthy", "starting") and state in (
            "backoff",
            "starting",
        ):
            self.registry.transition(self.instance_id, "crashed", error=error)
        self.registry.transition(self.instance_id, state, error=error)

    async def _supervise(self) -> None:
        while True:
            exit_of, code = await self._run_once()
            now = trio.current_time()
            if exit_of == "sidecar" and self.app is not None:
                await self.app.stop(grace=self.ctx.grace, hurry=self.ctx.hurry)
            if exit_of == "sidecar":
                self.sidecar = None
            self.app = None
            if exit_of == "app":
                self._record_app_exit(code)
            reason = f"{exit_of} exited with status {code}"
            squatter = None if self.port is None else port_squatter(self.port, ())
            if exit_of == "app" and squatter is not None:
                reason += f"; {squatter}"
            self._move_to("crashed", error=reason)
            decision = self.backoff.record_exit(now=now, exit_code=code)
            problem_key = f"restart-loop:{self.instance_id}"
            if decision.in_restart_loop:
                message = f"{self.instance_id} is in a restart loop: {decision.reason}"
                self.registry.set_problem(problem_key, message)
            else:
                self.registry.set_problem(problem_key, None)
            self.say(f"{reason}; {decision.reason}")
            if not decision.restart:
                if self.sidecar is not None:
                    await self.sidecar.stop(grace=self.ctx.grace, hurry=self.ctx.hurry)
                    self.sidecar = None
                self._move_to("stopped", error=reason)
                await trio.sleep_forever()
            self._move_to("backoff", error=reason)
            record = self.registry.get(self.instance_id)
            self.registry.update(self.instance_id, restarts=record.restarts + 1, pid=None)
            await trio.sleep(decision.delay)

    async def _run_once(self) -> tuple[str, int]:
        """Start what is not running, supervise until something exits; say what and how."""
        self._move_to("starting")
        if self.sidecar is None:
            try:
                await self._start_sidecar()
            except SidecarFailed as exc:
                return "sidecar", exc.code
        started_at = trio.current_time()
        self.backoff.record_start(started_at)
        if self.deployment is not None:
            try:
                await self._start_app(self.deployment)
            except ProcessStartError as exc:
                self.say(str(exc))
                return "app", 127
        else:
            self.registry.update(self.instance_id, started_at=time.time())
            self.registry.transition(self.instance_id, "healthy")
        exited: list[tuple[str, int]] = []
        async with trio.open_nursery() as nursery:

            async def watch(name: str, process: ManagedProcess) -> None:
                code = await process.wait()
                exited.append((name, code))
                nursery.cancel_scope.cancel()

            assert self.sidecar is not None
            nursery.start_soon(watch, "sidecar", self.sidecar)
            if self.app is not None and self.deployment is not None:
                nursery.start_soon(watch, "app", self.app)
                machine = ProbeStateMachine(
                    check_for(self.deployment.health), started_at=started_at
                )
                assert self.port is not None
                nursery.start_soon(
                    run_prober, machine, self.port, self._on_verdict, self._squatter_of(self.app)
                )
                nursery.start_soon(self._report_bound_ports, self.app)
        return exited[0]

    def _record_app_exit(self, code: int) -> None:
        """The exit status and the end of the log, for ``meshkit status``."""
        tail: tuple[str, ...] = ()
        if self._app_log is not None:
            try:
                with open(self._app_log, "rb") as handle:
                    handle.seek(max(os.fstat(handle.fileno()).st_size - LOG_TAIL_BYTES, 0))
                    text = handle.read().decode("utf-8", errors="replace")
                tail = tuple(text.splitlines()[-LOG_TAIL_LINES:])
            except OSError:
                pass
        self.registry.update(self.instance_id, exit_status=code, log_tail=tail)

    async def _report_bound_ports(self, app: ManagedProcess) -> None:
        """While the app is not healthy, record the ports its processes listen on."""
        while True:
            await trio.sleep(BOUND_PORTS_PERIOD)
            record = self.registry.get(self.instance_id)
            bound: tuple[int, ...] = ()
            if record.state != "healthy":
                bound = listening_ports([app.pid, *app.members()])
            if bound != record.listening_ports:
                self.registry.update(self.instance_id, listening_ports=bound)

    def _squatter_of(self, app: ManagedProcess) -> Callable[[], str | None]:
        """Who else holds the app's ``$PORT`` (``port_squatter``), checked before it is healthy."""
        port = self.port
        assert port is not None
        return lambda: port_squatter(port, [app.pid, *app.members()])

    def _on_verdict(self, verdict: ProbeVerdict, error: str | None) -> None:
        self._move_to(verdict, error=error)
        if verdict == "unhealthy":
            self.say(f"unhealthy: {error}")

    async def _start_sidecar(self) -> None:
        self.registry.update(self.instance_id, sidecar_ports={}, sidecar_pid=None)
        argv = (
            *self.ctx.sidecar_argv,
            "--instance",
            self.instance_id,
            "--control",
            os.fspath(self.ctx.control_socket),
        )
        env = dict(os.environ, **SIDECAR_ENV)
        env.pop(BOOTSTRAP_FD_ENV, None)
        token_fd: int | None = None
        if self.ctx.issuer is not None:
            identity = spiffe_id(self.registry.mesh, self.registry.get(self.instance_id).service)
            token = self.ctx.issuer.tokens.issue(identity, ttl=self.ctx.sidecar_ready_timeout)
            token_fd = bootstrap_pipe(token)
            env.update({BOOTSTRAP_FD_ENV: str(token_fd), IDENTITY_ENV: identity})
        spec = ProcessSpec(
            name=f"{self.instance_id} sidecar",
            argv=argv,
            env=env,
            cwd=os.fspath(self.ctx.base_dir),
            pass_fds=() if token_fd is None else (token_fd,),
            log_path=self._sidecar_log,
        )
        try:
            process = await spawn(
                spec, guard=self.ctx.guard, owners=self.ctx.owners, forker=self.ctx.template
            )
        except ProcessStartError as exc:
            self.say(str(exc))
            raise SidecarFailed(127) from exc
        finally:
            if token_fd is not None:
                os.close(token_fd)
        self.sidecar = process
        self.registry.update(self.instance_id, sidecar_pid=process.pid)
        ready = False
        with trio.move_on_after(self.ctx.sidecar_ready_timeout):
            async with trio.open_nursery() as nursery:

                async def wait_exit() -> None:
                    await process.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(wait_exit)
                ready = await self.ctx.changes.wait_until(
                    lambda reg: reg.get(self.instance_id).sidecar_ready
                )
                nursery.cancel_scope.cancel()
        if ready:
            return
        if process.returncode is None:
            self.say(f"sidecar did not report ready within {self.ctx.sidecar_ready_timeout:g}s")
        await process.stop(grace=self.ctx.grace, hurry=self.ctx.hurry)
        self.sidecar = None
        raise SidecarFailed(process.returncode if process.returncode is not None else 1)

    def _claim_a_free_port(self) -> None:
        """A fresh ``$PORT`` when another process listens on this one, which the app
        would otherwise fail to bind at every restart (``EADDRINUSE``).  The registry
        holds the new port, so the sidecar's config follows (as any endpoint change)."""
        if self._ports is None or self.port is None or is_free(LOOPBACK, self.port):
            return
        taken, holder = self.port, port_holder(self.port)
        self.port = self._ports.allocate()
        self._ports.release(taken)
        self.registry.update(self.instance_id, port=self.port)
        self.say(
            f"port {taken} is held by {holder or 'another process'}; "
            f"starting on port {self.port} instead"
        )

    async def _start_app(self, deployment: ServiceSpec) -> None:
        assert self._app_log is not None
        self._claim_a_free_port()
        record = self.registry.get(self.instance_id)
        assert self.port is not None
        env = app_environment(
            deployment=deployment,
            instance_id=self.name,
            port=self.port,
            sidecar_ports=record.sidecar_ports,
            base_env=dict(os.environ),
        )
        cwd = deployment.cwd if deployment.cwd is not None else os.fspath(self.ctx.base_dir)
        if not os.path.isabs(cwd):
            cwd = os.fspath(self.ctx.base_dir / cwd)
        spec = ProcessSpec(
            name=self.instance_id,
            argv=shell_argv(deployment.command),
            env=env,
            cwd=cwd,
            log_path=self._app_log,
        )
        process = await spawn(spec, guard=self.ctx.guard, owners=self.ctx.owners)
        self.app = process
        self.registry.update(self.instance_id, pid=process.pid, started_at=time.time())


def bootstrap_pipe(token: str) -> int:
    """The read end of a pipe holding ``token`` and nothing more (the write end is closed)."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, token.encode("ascii"))
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return read_end


class SidecarFailed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"sidecar failed with status {code}")
        self.code = code
