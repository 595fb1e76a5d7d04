"""The registry: every instance of the mesh, its state, its ports and its config.

A plain object with no I/O and no event loop.  The control plane mutates it
from one trio task at a time; whoever needs to wake up on a change (the
long-poll of the control API, the status page) registers a listener with
``Registry.on_change``.  Listeners are called synchronously with the id of the
instance that changed, so the trio layer can turn them into ``trio.Event``\\s.

State transitions follow one table (``ALLOWED_TRANSITIONS``)::

    starting  -> healthy | unhealthy | crashed | stopped
    healthy   -> unhealthy | crashed | stopped
    unhealthy -> healthy | crashed | stopped
    crashed   -> backoff | starting | stopped
    backoff   -> starting | stopped
    stopped   -> starting

Rolling restarts: a replacement instance runs beside the one it replaces under
the same stable name plus a generation (``catalog-v1-0~2``), since the control
API must tell the two sidecars apart while both run.  An instance being
replaced is ``retiring``: it leaves every cluster (no new requests) while its
in-flight requests finish, and is removed from the registry once stopped.

Config sync: besides the config each sidecar should run, the registry keeps
the last answer of each sidecar (``ack_of``) and the config it last applied
(``applied_config_of``), and the outcome of the last reload of the Meshfile
(``reload``).

Runtime faults live in ``Registry.faults`` (``meshkit.registry.faults``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import attrs

from meshkit.proxy.config import ProxyConfig
from meshkit.registry.faults import FaultStore
from meshkit.registry.limits import LimitStore

InstanceState = Literal["starting", "healthy", "unhealthy", "crashed", "backoff", "stopped"]
InstanceKind = Literal["app", "gateway"]

GATEWAY_INSTANCE = "gateway"
GENERATION_SEPARATOR = "~"
CONFIG_HISTORY = 8

ALLOWED_TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    "starting": frozenset({"healthy", "unhealthy", "crashed", "stopped"}),
    "healthy": frozenset({"unhealthy", "crashed", "stopped"}),
    "unhealthy": frozenset({"healthy", "crashed", "stopped"}),
    "crashed": frozenset({"backoff", "starting", "stopped"}),
    "backoff": frozenset({"starting", "stopped"}),
    "stopped": frozenset({"starting"}),
}


class RegistryError(Exception):
    """A request the registry refuses: unknown instance, impossible transition."""


@attrs.frozen(kw_only=True)
class InstanceRecord:
    """What the control plane knows about one instance (an app and its sidecar).

    ``sidecar_ports`` maps each listener name of the sidecar's config to the
    port it bound, as reported on ``/ready``; it is empty until then.
    """

    id: str
    service: str
    version: str | None = None
    kind: InstanceKind = "app"
    state: InstanceState = "stopped"
    pid: int | None = None
    sidecar_pid: int | None = None
    restarts: int = 0
    port: int | None = None
    sidecar_ports: dict[str, int] = attrs.field(factory=dict)
    started_at: float | None = None
    last_error: str | None = None
    # The sidecar's current certificate: when it expires (epoch seconds), and
    # why the last certificate request for this instance was refused, if it was.
    cert_not_after: float | None = None
    cert_error: str | None = None
    # Being replaced by a rolling restart: out of every cluster, about to stop.
    retiring: bool = False
    # Why this generation was started (``meshkit restart catalog``, ``Meshfile
    # changed: env``); None for the first start of the mesh.
    reason: str | None = None
    # The app's last exit: its status and the last lines of its log.
    exit_status: int | None = None
    log_tail: tuple[str, ...] = ()
    # The ports the app's processes listen on while it is not healthy (an app
    # that ignores ``$PORT`` shows where it went instead).
    listening_ports: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """The stable name users see: the id without its generation (``catalog-v1-0``)."""
        return self.id.partition(GENERATION_SEPARATOR)[0]

    @property
    def generation(self) -> int:
        """1 for the first instance under a name, 2 for its first replacement, ..."""
        _, separator, generation = self.id.partition(GENERATION_SEPARATOR)
        return int(generation) if separator and generation.isdigit() else 1

    @property
    def inbound_port(self) -> int | None:
        return self.sidecar_ports.get("inbound")

    @property
    def outbound_port(self) -> int | None:
        return self.sidecar_ports.get("outbound")

    @property
    def admin_port(self) -> int | None:
        return self.sidecar_ports.get("admin")

    @property
    def sidecar_ready(self) -> bool:
        return bool(self.sidecar_ports)


@attrs.frozen(kw_only=True)
class ConfigAck:
    """The last answer a sidecar gave about a config version."""

    version: int
    error: str | None = None


@attrs.frozen(kw_only=True)
class ReloadReport:
    """The outcome of the last reload of the Meshfile (``meshkit status`` shows it).

    ``error`` is set while the newest saved Meshfile cannot be applied (the
    running mesh keeps the last good one); ``duration_ms`` is the time from the
    detected change to the last sidecar's answer for the last applied reload,
    and ``phases_ms`` how it split (``evaluate``, ``publish``, ``sync``...), so a
    slow reload says where its time went.
    """

    reloads: int = 0
    error: str | None = None
    duration_ms: float | None = None
    summary: str = ""
    finished_at: float | None = None
    phases_ms: Mapping[str, float] = attrs.field(factory=dict)


ChangeListener = Callable[[str], None]


class Registry:
    """Instances, their states and the config version each sidecar should run."""

    def __init__(self, *, mesh: str) -> None:
        self.mesh = mesh
        self._instances: dict[str, InstanceRecord] = {}
        self._configs: dict[str, ProxyConfig] = {}
        self._acks: dict[str, ConfigAck] = {}
        self._listeners: list[ChangeListener] = []
        self._problems: dict[str, str] = {}
        self._history: dict[str, dict[int, ProxyConfig]] = {}
        self._applied: dict[str, ProxyConfig] = {}
        self.reload = ReloadReport()
        # Bumped by the changes a compiled config can depend on (not by configs,
        # answers, reload reports or problems): the compile loop skips the rest.
        self.inputs_generation = 0
        # Runtime faults (``meshkit fault``): every change is a registry change,
        # so the compile loop puts them into (or takes them out of) the configs.
        self.faults = FaultStore(on_change=lambda: self._notify("faults"))
        # Runtime rate limits (``meshkit limit``), the same way.
        self.limits = LimitStore(on_change=lambda: self._notify("limits"))

    # -- listeners ---------------------------------------------------------

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(instance_id)`` after every change to an instance."""
        self._listeners.append(listener)

    def _notify(self, instance_id: str, *, config_input: bool = True) -> None:
        if config_input:
            self.inputs_generation += 1
        for listener in list(self._listeners):
            listener(instance_id)

    # -- instances ---------------------------------------------------------

    def add(self, record: InstanceRecord) -> None:
        if record.id in self._instances:
            raise RegistryError(f"instance {record.id!r} is already registered")
        self._instances[record.id] = record
        self._notify(record.id)

    def remove(self, instance_id: str) -> None:
        """Forget a stopped instance, its configs and its acks."""
        record = self.get(instance_id)
        if record.state != "stopped":
            raise RegistryError(f"instance {instance_id!r} is {record.state}; stop it first")
        del self._instances[instance_id]
        for table in (self._configs, self._acks, self._history, self._applied):
            table.pop(instance_id, None)
        self._notify(instance_id)

    def get(self, instance_id: str) -> InstanceRecord:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise RegistryError(
                f"no instance called {instance_id!r} in mesh {self.mesh!r}"
            ) from None

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._instances

    def instances(self) -> list[InstanceRecord]:
        """Every instance, in the order they were added."""
        return list(self._instances.values())

    def app_instances(self) -> list[InstanceRecord]:
        return [rec for rec in self._instances.values() if rec.kind == "app"]

    def healthy_instances_of(self, service: str) -> list[InstanceRecord]:
        """Instances of ``service`` (any version) that may receive traffic."""
        return [
            rec
            for rec in self._instances.values()
            if rec.kind == "app"
            and rec.service == service
            and rec.state == "healthy"
            and not rec.retiring
            and rec.inbound_port is not None
        ]

    def newest_named(self, name: str) -> InstanceRecord | None:
        """The newest generation of the instance users call ``name`` (or that exact id)."""
        if name in self._instances:
            return self._instances[name]
        named = [rec for rec in self._instances.values() if rec.name == name]
        return max(named, key=lambda rec: rec.generation) if named else None

    def update(self, instance_id: str, **changes: object) -> InstanceRecord:
        """Replace fields of an instance (not its state: see ``transition``)."""
        if "state" in changes:
            raise RegistryError("change an instance's state with Registry.transition")
        record = attrs.evolve(self.get(instance_id), **changes)  # type: ignore[arg-type]
        self._instances[instance_id] = record
        self._notify(instance_id)
        return record

    def transition(
        self, instance_id: str, state: InstanceState, *, error: str | None = None
    ) -> bool:
        """Move an instance to ``state``; return False if it was already there.

        Raises ``RegistryError`` for a transition the table above forbids.
        """
        record = self.get(instance_id)
        if record.state == state:
            if error is not None and error != record.last_error:
                self._instances[instance_id] = attrs.evolve(record, last_error=error)
                self._notify(instance_id)
            return False
        if state not in ALLOWED_TRANSITIONS[record.state]:
            raise RegistryError(
                f"instance {instance_id!r} cannot go from {record.state} to {state}"
            )
        self._instances[instance_id] = attrs.evolve(
            record, state=state, last_error=error if error is not None else record.last_error
        )
        self._notify(instance_id)
        return True

    def mark_sidecar_ready(self, instance_id: str, *, pid: int, ports: dict[str, int]) -> None:
        self.update(instance_id, sidecar_pid=pid, sidecar_ports=dict(ports))

    def record_certificate(
        self, instance_id: str, *, not_after: float | None = None, error: str | None = None
    ) -> None:
        """An issued certificate (``not_after``) clears the error; a refusal records ``error``."""
        if not_after is not None:
            self.update(instance_id, cert_not_after=not_after, cert_error=None)
        else:
            self.update(instance_id, cert_error=error)

    def all_healthy(self) -> bool:
        apps = self.app_instances()
        return bool(apps) and all(rec.state == "healthy" for rec in apps)

    # -- problems ----------------------------------------------------------

    def set_problem(self, key: str, message: str | None) -> None:
        """Record (or, with None, clear) a problem shown in the status' errors."""
        if message is None:
            self._problems.pop(key, None)
        else:
            self._problems[key] = message
        self._notify(key, config_input=False)

    def problems(self) -> list[str]:
        return list(self._problems.values())

    # -- configs -----------------------------------------------------------

    def config_of(self, instance_id: str) -> ProxyConfig | None:
        return self._configs.get(instance_id)

    def config_version(self, instance_id: str) -> int:
        config = self._configs.get(instance_id)
        return 0 if config is None else config.version

    def publish(self, configs: Iterable[ProxyConfig]) -> list[str]:
        """Store compiled configs; return the ids whose version went up.

        A config whose version is not above the stored one is ignored, so
        publishing the unchanged output of ``compile_configs`` wakes nobody.
        """
        bumped: list[str] = []
        for config in configs:
            self.get(config.instance)
            if config.version > self.config_version(config.instance):
                self._configs[config.instance] = config
                history = self._history.setdefault(config.instance, {})
                history[config.version] = config
                for old in sorted(history)[:-CONFIG_HISTORY]:
                    del history[old]
                bumped.append(config.instance)
        for instance_id in bumped:
            self._notify(instance_id, config_input=False)
        return bumped

    def record_ack(self, instance_id: str, *, version: int, error: str | None) -> None:
        self.get(instance_id)
        self._acks[instance_id] = ConfigAck(version=version, error=error)
        applied = self._history.get(instance_id, {}).get(version)
        if error is None and applied is not None:
            self._applied[instance_id] = applied
        self._notify(instance_id, config_input=False)

    def ack_of(self, instance_id: str) -> ConfigAck | None:
        return self._acks.get(instance_id)

    def applied_config_of(self, instance_id: str) -> ProxyConfig | None:
        """The config the sidecar last acknowledged as applied (None before its first)."""
        return self._applied.get(instance_id)

    def in_sync(self, instance_id: str) -> bool:
        """The sidecar answered (ACK or NACK) the newest config published for it."""
        ack = self._acks.get(instance_id)
        return ack is not None and ack.version >= self.config_version(instance_id)

    def record_reload(self, report: ReloadReport) -> None:
        self.reload = report
        self._notify("reload", config_input=False)
