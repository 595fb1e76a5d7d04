"""The Meshfile's ``Mesh`` and its verbs: ``mesh.service``, ``mesh.gateway``,
``mesh.route`` and ``mesh.policy``.

Every verb records the ``Origin`` of the user's line that called it.  The
arguments are read into the spec's vocabulary here; a value of the wrong type
(``replicas="2"``, ``env={"A": 1}``, ``period="2 parsecs"``) becomes a
``Problem`` at that line and a harmless placeholder, so one evaluation reports
every mistake.  Whether the values make a sound mesh (names, references,
ranges, cycles) is decided afterwards by ``meshkit.dsl.checks``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TypeAlias, get_args

import attrs

from meshkit.api import Forward, HeaderOps, LimitKey
from meshkit.dsl.checks.problems import describe_value
from meshkit.dsl.evaluate.userframes import caller_origin
from meshkit.dsl.spec import (
    UNKNOWN_ORIGIN,
    AuthorizationMode,
    AuthzSpec,
    BreakerSpec,
    BudgetSpec,
    FaultSpec,
    GatewayRoute,
    GatewaySpec,
    HealthCheck,
    JwtSpec,
    MirrorSpec,
    MtlsMode,
    Origin,
    OutlierSpec,
    PolicySpec,
    RateLimitSpec,
    RestartMode,
    RestartPolicy,
    RetrySpec,
    RouteSpec,
    RuleSpec,
    ServiceProtocol,
    ServiceSpec,
)
from meshkit.dsl.verbs.authz import AUTHORIZATION_MODES, AuthorizationVerbs, authorization_mode
from meshkit.dsl.verbs.collect import MeshDeclaration, active_collector, base_directory, report
from meshkit.dsl.verbs.health import RESTART_MODES, restart_mode
from meshkit.dsl.verbs.limits import declare_rate_limit
from meshkit.dsl.verbs.options import RawOptions
from meshkit.dsl.verbs.reader import ArgumentReader, Declared, Duration
from meshkit.dsl.verbs.resilience import declare_policy
from meshkit.dsl.verbs.route import declare_route
from meshkit.dsl.verbs.traffic import Match

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


class _ServiceReader(ArgumentReader):
    """The one argument reader, plus what only services and the gateway take."""

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
                base = base_directory(self.origin)
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
        hint = f" (did you mean {field}=http_get({value!r})?)" if isinstance(value, str) else ""
        self.fail(
            f"{field} must be http_get(...) or tcp_connect(...), got {describe_value(value)}{hint}"
        )
        return None

    def restart_policy(self, field: str, value: object) -> RestartPolicy:
        if isinstance(value, RestartPolicy):
            return value
        mode = self.choice(field, value, RESTART_MODES)
        return RestartPolicy() if mode is None else restart_mode(mode)

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


def _mtls_mode(mode: str | None) -> MtlsMode:
    return "permissive" if mode == "permissive" else "strict"


def _subject(name: object, version: object) -> str:
    subject = f"service {name!r}" if isinstance(name, str) else "service"
    return subject + (f" version {version!r}" if isinstance(version, str) else "")


class Mesh(AuthorizationVerbs):
    """A mesh: the services of a Meshfile, their gateway and their policies.

    ``Mesh("shop")`` must appear exactly once in a Meshfile; the object is then
    told about services with ``service(...)`` and about its edge with
    ``gateway(...)``.  ``mtls`` is ``"strict"`` (sidecars accept only mTLS) or
    ``"permissive"`` (plaintext is accepted too).  ``cert_lifetime`` is the
    lifetime of each workload certificate (renewed at half of it).
    ``authorization`` is who may call a service no policy protects: ``"open"``
    (everyone), ``"deny"`` (no one) or ``"upstreams"`` (exactly the callers
    whose ``upstreams=`` name it, and the gateway for the services it routes to).
    """

    def __init__(
        self,
        name: str,
        *,
        mtls: MtlsMode = "strict",
        cert_lifetime: float | str = "24h",
        authorization: AuthorizationMode = "open",
    ) -> None:
        self._origin = caller_origin()
        reader = _ServiceReader(origin=self._origin, subject="Mesh(...)")
        self._name = reader.text("name", name, fallback="mesh")
        self._mtls = _mtls_mode(reader.choice("mtls", mtls, MTLS_MODES))
        self._cert_lifetime = reader.duration("cert_lifetime", cert_lifetime, fallback=86400.0)
        self._services: list[ServiceSpec] = []
        self._gateways: list[GatewaySpec] = []
        self._routes: list[RouteSpec] = []
        self._policies: list[PolicySpec] = []
        self._rate_limits: list[RateLimitSpec] = []
        self._authorization = authorization_mode(
            reader.choice("authorization", authorization, AUTHORIZATION_MODES)
        )
        self._authz: list[AuthzSpec] = []
        self._jwt: list[JwtSpec] = []
        report(reader.problems)
        collector = active_collector.get()
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
        restart_policy: RestartPolicy | RestartMode = "always",
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
        reader = _ServiceReader(origin=origin, subject=_subject(name, version))
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
            restart_policy=reader.restart_policy("restart_policy", restart_policy),
            watch=reader.paths("watch", watch),
            protocol=_protocol(reader.choice("protocol", protocol, SERVICE_PROTOCOLS)),
            image=reader.optional_text("image", image),
            origin=origin,
        )
        report(reader.problems)
        self._services.append(spec)
        return ServiceHandle(name=spec.name, version=spec.version, origin=origin)

    def gateway(
        self,
        *,
        port: int = 8080,
        host: str = "127.0.0.1",
        routes: Mapping[str, ServiceRef] = DEFAULT_GATEWAY_ROUTES,
        tls_port: int | None = None,
        hosts: Iterable[str] = (),
    ) -> None:
        """Declare the mesh's edge: HTTP on ``host:port``, path prefix -> service.

        The longest matching prefix wins; ``port=0`` lets the system choose.
        ``tls_port`` adds HTTPS with a certificate from the mesh's local CA.
        ``hosts`` are the names besides loopback that requests may carry as
        ``Host`` (others are refused with 403, against DNS rebinding).
        """
        origin = caller_origin()
        reader = _ServiceReader(origin=origin, subject="gateway")
        self._gateways.append(
            GatewaySpec(
                host=reader.text("host", host, fallback="127.0.0.1"),
                port=reader.integer("port", port, fallback=0),
                tls_port=None
                if tls_port is None
                else reader.integer("tls_port", tls_port, fallback=0),
                routes=reader.gateway_routes("routes", routes, origin=origin),
                hosts=reader.host_names("hosts", hosts),
                origin=origin,
            )
        )
        report(reader.problems)

    def route(
        self,
        service: ServiceRef,
        *rules: Declared[RuleSpec],
        default: Declared[Forward] | str | None = None,
        timeout: Duration | None = None,
        retry: Declared[RetrySpec] | None = None,
        fault: Declared[FaultSpec] | None = None,
        mirror: Declared[MirrorSpec] | None = None,
        request_headers: Declared[HeaderOps] | None = None,
        response_headers: Declared[HeaderOps] | None = None,
    ) -> None:
        """Route requests to ``service`` (Istio's VirtualService): the first matching rule wins.

        ``rules`` are ``match(...).to(...)``, ``.split(...)``, ``.redirect(...)`` or
        ``.respond(...)``; requests none matches go to ``default`` (a version name
        or ``split(v1=90, v2=10)``; every version, round robin, when omitted).
        ``timeout`` (default 15s, ``0`` disables) covers retries; the options
        apply to every forwarding rule that does not set its own.  The gateway
        applies these rules too, once its prefix chose the service.
        """
        spec, problems = declare_route(
            origin=caller_origin(),
            service=_service_name(service),
            rules=rules,
            default=default,
            raw=RawOptions(timeout, retry, fault, mirror, request_headers, response_headers),
        )
        report(problems)
        self._routes.append(spec)

    def policy(
        self,
        service: ServiceRef,
        *,
        load_balancer: str = "round_robin",
        breaker: Declared[BreakerSpec] | None = None,
        outlier: Declared[OutlierSpec] | None = None,
        retry_budget: Declared[BudgetSpec] | None = None,
    ) -> None:
        """How requests to ``service`` are spread and protected (Istio's DestinationRule).

        ``load_balancer`` is ``"round_robin"`` or ``"least_request"`` (the less
        busy of two random instances); ``breaker(...)``, ``outlier(...)`` and
        ``retry_budget(...)`` override the defaults (1024/1024/1024/3; 5 errors, 30s..300s;
        20 % + 10/s).
        """
        spec, problems = declare_policy(
            origin=caller_origin(),
            service=_service_name(service),
            load_balancer=load_balancer,
            breaker=breaker,
            outlier=outlier,
            retry_budget=retry_budget,
        )
        report(problems)
        self._policies.append(spec)

    def rate_limit(
        self,
        service: ServiceRef,
        rate: str,
        *,
        burst: int | None = None,
        per: LimitKey = "service",
        route: Match | None = None,
    ) -> None:
        """Admit at most ``rate`` (``"100/s"``, ``"5/m"``) requests to ``service``, per instance.

        Envoy's local rate limit: each instance's sidecar keeps a token bucket
        of ``burst`` tokens (the rate's count by default); ``per="caller"`` gives
        every caller its own, ``route=match(...)`` narrows it to one route.  Over
        the limit a request gets ``429`` (flag ``RL``) with ``retry-after``.
        """
        name = service.name if isinstance(service, ServiceHandle) else str(service)
        spec, problems = declare_rate_limit(
            origin=caller_origin(), service=name, rate=rate, burst=burst, per=per, route=route
        )
        report(problems)
        self._rate_limits.append(spec)

    def declaration(self, *, file: str) -> MeshDeclaration:
        """What this mesh was told so far, as data; ``file`` is the Meshfile evaluated."""
        return MeshDeclaration(
            name=self._name,
            file=file,
            gateway=self._gateways[0] if self._gateways else None,
            mtls=self._mtls,
            cert_lifetime=self._cert_lifetime,
            origin=self._origin,
            services=tuple(self._services),
            gateways=tuple(self._gateways),
            routes=tuple(self._routes),
            policies=tuple(self._policies),
            rate_limits=tuple(self._rate_limits),
            authorization=self._authorization,
            authz=tuple(self._authz),
            request_authentication=tuple(self._jwt),
        )


def _service_name(service: object) -> str:
    """The name a ``ServiceRef`` stands for (a wrong type shows as its repr, for the error)."""
    name = service.name if isinstance(service, ServiceHandle) else service
    return name if isinstance(name, str) else repr(name)
