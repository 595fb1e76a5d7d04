"""The Meshfile's verbs: ``Mesh``, ``mesh.service``, ``mesh.gateway``, ``http``, ``tcp``, ``restart``.

Every verb records the ``Origin`` of the user's line that called it.  The
arguments are read into the spec's vocabulary here; a value of the wrong type
(``replicas="2"``, ``env={"A": 1}``, ``period="2 parsecs"``) becomes a
``Problem`` at that line and a harmless placeholder, so one evaluation reports
every mistake.  Whether the values make a sound mesh (names, references,
ranges, cycles) is decided afterwards by ``meshkit.dsl.validate``.

While ``collecting(...)`` is active (that is, during an evaluation) each ``Mesh``
and each problem is gathered by the active ``Collector``; used outside an
evaluation, a mistake raises ``MeshfileError`` at once.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TypeAlias, get_args

import attrs

from meshkit.dsl.durations import DurationError, parse_duration
from meshkit.dsl.problems import MeshfileError, Problem, describe_value
from meshkit.dsl.resilience import Breaker, Budget, Outlier, declare_policy
from meshkit.dsl.spec import (
    UNKNOWN_ORIGIN,
    GatewayRoute,
    GatewaySpec,
    HealthCheck,
    MtlsMode,
    Origin,
    PolicySpec,
    RestartMode,
    RestartPolicy,
    RouteSpec,
    ServiceProtocol,
    ServiceSpec,
)
from meshkit.dsl.suggest import did_you_mean
from meshkit.dsl.traffic import Fault, HeaderRules, Mirror, Retry, Rule, Split, declare_route
from meshkit.dsl.userframes import caller_origin

Duration: TypeAlias = int | float | str
"""Seconds as a number, or a string such as ``"250ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``."""

RESTART_MODES: tuple[str, ...] = get_args(RestartMode)
SERVICE_PROTOCOLS: tuple[str, ...] = get_args(ServiceProtocol)
MTLS_MODES: tuple[str, ...] = get_args(MtlsMode)
DEFAULT_GATEWAY_ROUTES: Mapping[str, str] = MappingProxyType({"/": "frontend"})


@attrs.frozen(kw_only=True)
class ServiceHandle:
    """What ``mesh.service(...)`` returns: usable wherever a service name is expected."""

    name: str
    version: str | None = None
    origin: Origin = UNKNOWN_ORIGIN

    def __str__(self) -> str:
        return self.name


ServiceRef: TypeAlias = str | ServiceHandle


@attrs.frozen(kw_only=True)
class MeshDeclaration:
    """What one ``Mesh(...)`` object was told, before validation."""

    name: str
    mtls: MtlsMode
    cert_lifetime: float
    origin: Origin
    services: tuple[ServiceSpec, ...] = ()
    gateways: tuple[GatewaySpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    policies: tuple[PolicySpec, ...] = ()


@attrs.frozen(kw_only=True)
class Declarations:
    """Everything one evaluation of a Meshfile declared, and the mistakes made doing it."""

    meshfile: str
    meshes: tuple[MeshDeclaration, ...] = ()
    problems: tuple[Problem, ...] = ()


class Collector:
    """Gathers the meshes and problems of one evaluation (see ``collecting``)."""

    def __init__(self, *, meshfile: str) -> None:
        self.meshfile = os.path.abspath(meshfile)
        self.meshes: list[Mesh] = []
        self.problems: list[Problem] = []

    def declarations(self) -> Declarations:
        return Declarations(
            meshfile=self.meshfile,
            meshes=tuple(mesh.declaration() for mesh in self.meshes),
            problems=tuple(self.problems),
        )


_active_collector: ContextVar[Collector | None] = ContextVar(
    "meshkit_dsl_active_collector", default=None
)


@contextmanager
def collecting(meshfile: str) -> Iterator[Collector]:
    """Gather every ``Mesh`` and problem declared inside the ``with`` block."""
    collector = Collector(meshfile=meshfile)
    token = _active_collector.set(collector)
    try:
        yield collector
    finally:
        _active_collector.reset(token)


def _report(problems: list[Problem]) -> None:
    collector = _active_collector.get()
    if collector is not None:
        collector.problems.extend(problems)
    elif problems:
        raise MeshfileError(problems[0])


def _base_directory(origin: Origin) -> str:
    """The directory relative paths are resolved against: the Meshfile's."""
    collector = _active_collector.get()
    if collector is not None:
        return os.path.dirname(collector.meshfile)
    if origin.file.startswith("<"):
        return os.getcwd()
    return os.path.dirname(origin.file)


class _ArgumentReader:
    """Reads a verb's arguments into typed values, noting each mistake as a Problem."""

    def __init__(self, *, origin: Origin, subject: str) -> None:
        self.origin = origin
        self.subject = subject
        self.problems: list[Problem] = []

    def fail(self, message: str) -> None:
        prefix = f"{self.subject}: " if self.subject else ""
        self.problems.append(Problem.at(self.origin, prefix + message))

    def text(self, field: str, value: object, *, fallback: str) -> str:
        if isinstance(value, str):
            return value
        self.fail(f"{field} must be a string, got {describe_value(value)}")
        return fallback

    def optional_text(self, field: str, value: object) -> str | None:
        return None if value is None else self.text(field, value, fallback="")

    def integer(self, field: str, value: object, *, fallback: int) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.fail(f"{field} must be an int, got {describe_value(value)}")
        return fallback

    def duration(self, field: str, value: object, *, fallback: float) -> float:
        try:
            return parse_duration(value)
        except DurationError as error:
            self.fail(f"{field}: {error}")
            return fallback

    def choice(self, field: str, value: object, choices: tuple[str, ...]) -> str | None:
        if isinstance(value, str) and value in choices:
            return value
        allowed = ", ".join(repr(choice) for choice in choices)
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        self.fail(f"{field} {value!r} is not one of {allowed}{hint}")
        return None

    def service_refs(self, field: str, value: object) -> tuple[str, ...]:
        items: Iterable[object]
        if isinstance(value, str | ServiceHandle):
            items = (value,)
        elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
            items = value
        else:
            self.fail(f"{field} must be a list of service names, got {describe_value(value)}")
            return ()
        names: list[str] = []
        for item in items:
            if isinstance(item, ServiceHandle):
                names.append(item.name)
            elif isinstance(item, str):
                names.append(item)
            else:
                self.fail(
                    f"{field} entries must be service names or what mesh.service() "
                    f"returned, got {describe_value(item)}"
                )
        return tuple(dict.fromkeys(names))

    def path(self, field: str, value: object) -> str | None:
        if isinstance(value, str | os.PathLike):
            raw = os.fspath(value)
            if isinstance(raw, str):
                base = _base_directory(self.origin)
                return os.path.normpath(os.path.join(base, os.path.expanduser(raw)))
        self.fail(f"{field} must be a path (a string), got {describe_value(value)}")
        return None

    def paths(self, field: str, value: object) -> tuple[str, ...]:
        if isinstance(value, str | os.PathLike):
            single = self.path(field, value)
            return () if single is None else (single,)
        if not isinstance(value, Iterable) or isinstance(value, bytes | Mapping):
            self.fail(f"{field} must be a list of paths, got {describe_value(value)}")
            return ()
        resolved = (self.path(field, item) for item in value)
        return tuple(path for path in resolved if path is not None)

    def environment(self, field: str, value: object) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(f"{field} must be a dict of strings, got {describe_value(value)}")
            return {}
        env: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                self.fail(f"{field}: {key!r} is not an environment variable name")
            elif not isinstance(item, str):
                self.fail(
                    f"{field} {key!r} must be a string, got {describe_value(item)}"
                    f" (write {str(item)!r} if that is what you mean)"
                )
            else:
                env[key] = item
        return env

    def command(self, field: str, value: object) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, list | tuple) and all(isinstance(part, str) for part in value):
            return shlex.join(value)
        self.fail(
            f"{field} must be a command (a string or a list of strings), got "
            f"{describe_value(value)}"
        )
        return ""

    def health(self, field: str, value: object) -> HealthCheck | None:
        if value is None or isinstance(value, HealthCheck):
            return value
        hint = f" (did you mean {field}=http({value!r})?)" if isinstance(value, str) else ""
        self.fail(f"{field} must be http(...) or tcp(...), got {describe_value(value)}{hint}")
        return None

    def restart_policy(self, field: str, value: object) -> RestartPolicy:
        if isinstance(value, RestartPolicy):
            return value
        mode = self.choice(field, value, RESTART_MODES)
        return RestartPolicy() if mode is None else _restart_policy(mode)

    def gateway_routes(
        self, field: str, value: object, *, origin: Origin
    ) -> tuple[GatewayRoute, ...]:
        if not isinstance(value, Mapping):
            self.fail(f"{field} must be a dict of prefix -> service, got {describe_value(value)}")
            return ()
        routes: list[GatewayRoute] = []
        for prefix, target in value.items():
            if not isinstance(prefix, str):
                self.fail(f"{field}: prefix must be a string, got {describe_value(prefix)}")
            elif isinstance(target, ServiceHandle | str):
                name = target.name if isinstance(target, ServiceHandle) else target
                routes.append(GatewayRoute(prefix=prefix, service=name, origin=origin))
            else:
                self.fail(f"route {prefix!r} must name a service, got {describe_value(target)}")
        return tuple(routes)


def _protocol(choice: str | None) -> ServiceProtocol:
    if choice == "http2":
        return "http2"
    if choice == "grpc":
        return "grpc"
    return "http1"


def _restart_policy(mode: str) -> RestartPolicy:
    if mode == "no":
        return RestartPolicy(mode="no")
    if mode == "on_failure":
        return RestartPolicy(mode="on_failure")
    return RestartPolicy(mode="always")


def _mtls_mode(mode: str | None) -> MtlsMode:
    return "permissive" if mode == "permissive" else "strict"


def _subject(name: object, version: object) -> str:
    subject = f"service {name!r}" if isinstance(name, str) else "service"
    return subject + (f" version {version!r}" if isinstance(version, str) else "")


class Mesh:
    """A mesh: the services of a Meshfile, their gateway and their policies.

    ``Mesh("shop")`` must appear exactly once in a Meshfile; the object is then
    told about services with ``service(...)`` and about its edge with
    ``gateway(...)``.  ``mtls`` is ``"strict"`` (sidecars accept only mTLS) or
    ``"permissive"`` (plaintext is accepted too).  ``cert_lifetime`` is the
    lifetime of each workload certificate (renewed at half of it).
    """

    def __init__(
        self, name: str, *, mtls: MtlsMode = "strict", cert_lifetime: float | str = "24h"
    ) -> None:
        self._origin = caller_origin()
        reader = _ArgumentReader(origin=self._origin, subject="Mesh(...)")
        self._name = reader.text("name", name, fallback="mesh")
        self._mtls = _mtls_mode(reader.choice("mtls", mtls, MTLS_MODES))
        self._cert_lifetime = reader.duration("cert_lifetime", cert_lifetime, fallback=86400.0)
        self._services: list[ServiceSpec] = []
        self._gateways: list[GatewaySpec] = []
        self._routes: list[RouteSpec] = []
        self._policies: list[PolicySpec] = []
        _report(reader.problems)
        collector = _active_collector.get()
        if collector is not None:
            collector.meshes.append(self)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"Mesh({self._name!r})"

    def service(
        self,
        name: str,
        *,
        run: str | list[str] | tuple[str, ...],
        version: str | None = None,
        replicas: int = 1,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        health: HealthCheck | None = None,
        depends_on: ServiceRef | Iterable[ServiceRef] = (),
        upstreams: ServiceRef | Iterable[ServiceRef] = (),
        restart: RestartPolicy | RestartMode = "always",
        watch: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = (),
        protocol: ServiceProtocol = "http1",
        image: str | None = None,
    ) -> ServiceHandle:
        """Declare one deployment of a service; returns a handle naming it.

        ``run`` is a shell command started with ``PORT`` and the mesh's
        variables in its environment; ``version`` makes this one subset of a
        service that has several; ``depends_on`` services are started (and
        healthy) first; ``upstreams`` get a local port and ``<NAME>_URL``;
        ``watch`` paths restart this service when they change; ``protocol``
        is what the app speaks (``"http2"``/``"grpc"``: h2c with prior
        knowledge, ``"http1"`` by default); ``image`` is the container image
        ``meshkit export kubernetes`` deploys (``meshkit up`` ignores it).  Relative
        ``cwd`` and ``watch`` paths are resolved against the Meshfile's
        directory.
        """
        origin = caller_origin()
        reader = _ArgumentReader(origin=origin, subject=_subject(name, version))
        cwd_path = None if cwd is None else reader.path("cwd", cwd)
        spec = ServiceSpec(
            name=reader.text("name", name, fallback="service"),
            command=reader.command("run", run),
            version=reader.optional_text("version", version),
            replicas=reader.integer("replicas", replicas, fallback=1),
            env=reader.environment("env", env),
            cwd=cwd_path,
            health=reader.health("health", health),
            depends_on=reader.service_refs("depends_on", depends_on),
            upstreams=reader.service_refs("upstreams", upstreams),
            restart=reader.restart_policy("restart", restart),
            watch=reader.paths("watch", watch),
            protocol=_protocol(reader.choice("protocol", protocol, SERVICE_PROTOCOLS)),
            image=reader.optional_text("image", image),
            origin=origin,
        )
        _report(reader.problems)
        self._services.append(spec)
        return ServiceHandle(name=spec.name, version=spec.version, origin=origin)

    def gateway(
        self,
        *,
        port: int = 8080,
        host: str = "127.0.0.1",
        routes: Mapping[str, ServiceRef] = DEFAULT_GATEWAY_ROUTES,
        tls_port: int | None = None,
    ) -> None:
        """Declare the mesh's edge: HTTP on ``host:port``, path prefix -> service.

        The longest matching prefix wins; ``port=0`` lets the system choose.
        ``tls_port`` adds HTTPS with a certificate from the mesh's local CA.
        """
        origin = caller_origin()
        reader = _ArgumentReader(origin=origin, subject="gateway")
        self._gateways.append(
            GatewaySpec(
                host=reader.text("host", host, fallback="127.0.0.1"),
                port=reader.integer("port", port, fallback=0),
                tls_port=None
                if tls_port is None
                else reader.integer("tls_port", tls_port, fallback=0),
                routes=reader.gateway_routes("routes", routes, origin=origin),
                origin=origin,
            )
        )
        _report(reader.problems)

    def route(
        self,
        service: ServiceRef,
        *rules: Rule,
        default: Split | str | None = None,
        timeout: Duration | None = None,
        retries: Retry | None = None,
        fault: Fault | None = None,
        mirror: Mirror | None = None,
        request_headers: HeaderRules | None = None,
        response_headers: HeaderRules | None = None,
    ) -> None:
        """Route requests to ``service`` (Istio's VirtualService): the first matching rule wins.

        ``rules`` are ``match(...).to(...)``, ``.split(...)``, ``.redirect(...)`` or
        ``.respond(...)``; requests none matches go to ``default`` (a version name
        or ``split(v1=90, v2=10)``; every version, round robin, when omitted).
        ``timeout`` (default 15s, ``0`` disables) covers retries; the options
        apply to every forwarding rule that does not set its own.  The gateway
        applies these rules too, once its prefix chose the service.
        """
        origin = caller_origin()
        name = service.name if isinstance(service, ServiceHandle) else service
        spec, problems = declare_route(
            origin=origin,
            service=name if isinstance(name, str) else repr(name),
            rules=rules,
            default=default,
            timeout=timeout,
            retries=retries,
            fault=fault,
            mirror=mirror,
            request_headers=request_headers,
            response_headers=response_headers,
        )
        _report(problems)
        self._routes.append(spec)

    def policy(
        self,
        service: ServiceRef,
        *,
        load_balancer: str = "round_robin",
        breaker: Breaker | None = None,
        outlier: Outlier | None = None,
        retry_budget: Budget | None = None,
    ) -> None:
        """How requests to ``service`` are spread and protected (Istio's DestinationRule).

        ``load_balancer`` is ``"round_robin"`` or ``"least_request"`` (the less
        busy of two random instances); ``breaker(...)``, ``outlier(...)`` and
        ``budget(...)`` override the defaults (1024/1024/1024/3; 5 errors, 30s..300s;
        20 % + 10/s).
        """
        origin = caller_origin()
        name = service.name if isinstance(service, ServiceHandle) else service
        spec, problems = declare_policy(
            origin=origin,
            service=name if isinstance(name, str) else repr(name),
            load_balancer=load_balancer,
            breaker=breaker,
            outlier=outlier,
            retry_budget=retry_budget,
        )
        _report(problems)
        self._policies.append(spec)

    def declaration(self) -> MeshDeclaration:
        """What this mesh was told so far, as data."""
        return MeshDeclaration(
            name=self._name,
            mtls=self._mtls,
            cert_lifetime=self._cert_lifetime,
            origin=self._origin,
            services=tuple(self._services),
            gateways=tuple(self._gateways),
            routes=tuple(self._routes),
            policies=tuple(self._policies),
        )


def _health_check(
    reader: _ArgumentReader,
    *,
    kind: str,
    path: object,
    period: object,
    timeout: object,
    initial_delay: object,
    success_threshold: object,
    failure_threshold: object,
) -> HealthCheck:
    defaults = HealthCheck()
    check = HealthCheck(
        kind="tcp" if kind == "tcp" else "http",
        path=reader.text("path", path, fallback="/"),
        period=reader.duration("period", period, fallback=defaults.period),
        timeout=reader.duration("timeout", timeout, fallback=defaults.timeout),
        initial_delay=reader.duration("initial_delay", initial_delay, fallback=0.0),
        success_threshold=reader.integer(
            "success_threshold", success_threshold, fallback=defaults.success_threshold
        ),
        failure_threshold=reader.integer(
            "failure_threshold", failure_threshold, fallback=defaults.failure_threshold
        ),
    )
    _report(reader.problems)
    return check


def http(
    path: str = "/",
    *,
    period: Duration = "1s",
    timeout: Duration = "1s",
    initial_delay: Duration = 0,
    success_threshold: int = 1,
    failure_threshold: int = 3,
) -> HealthCheck:
    """An HTTP health check: ``GET path`` on the app's port; 2xx and 3xx are healthy."""
    return _health_check(
        _ArgumentReader(origin=caller_origin(), subject="http(...)"),
        kind="http",
        path=path,
        period=period,
        timeout=timeout,
        initial_delay=initial_delay,
        success_threshold=success_threshold,
        failure_threshold=failure_threshold,
    )


def tcp(
    *,
    period: Duration = "1s",
    timeout: Duration = "1s",
    initial_delay: Duration = 0,
    success_threshold: int = 1,
    failure_threshold: int = 3,
) -> HealthCheck:
    """A TCP health check: a connect to the app's port that succeeds is healthy."""
    return _health_check(
        _ArgumentReader(origin=caller_origin(), subject="tcp(...)"),
        kind="tcp",
        path="/",
        period=period,
        timeout=timeout,
        initial_delay=initial_delay,
        success_threshold=success_threshold,
        failure_threshold=failure_threshold,
    )


def restart(
    mode: RestartMode = "always",
    *,
    backoff: Duration = "500ms",
    max_backoff: Duration = "30s",
    reset_after: Duration = "10s",
) -> RestartPolicy:
    """When a stopped app is started again (``"always"``, ``"on_failure"``, ``"no"``).

    The wait before a restart starts at ``backoff``, doubles up to
    ``max_backoff``, and starts over once the app has stayed up ``reset_after``.
    """
    reader = _ArgumentReader(origin=caller_origin(), subject="restart(...)")
    defaults = RestartPolicy()
    chosen = reader.choice("mode", mode, RESTART_MODES)
    base = RestartPolicy() if chosen is None else _restart_policy(chosen)
    policy = attrs.evolve(
        base,
        backoff_initial=reader.duration("backoff", backoff, fallback=defaults.backoff_initial),
        backoff_max=reader.duration("max_backoff", max_backoff, fallback=defaults.backoff_max),
        reset_after=reader.duration("reset_after", reset_after, fallback=defaults.reset_after),
    )
    _report(reader.problems)
    return policy
