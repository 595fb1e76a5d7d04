"""The Meshfile's vocabulary: what a Meshfile says, as frozen attrs classes.

A ``MeshSpec`` is the validated result of evaluating a Meshfile.  Every
declaration carries the ``Origin`` (file and line) of the call that made it, so
that any later error can point at the user's code.  These classes are plain
data: they hold no behaviour beyond small derived properties, and cattrs (see
``meshkit.dsl.convert``) alone turns them into JSON and back.
"""

from __future__ import annotations

from typing import Literal

import attrs

HealthKind = Literal["http", "tcp"]
RestartMode = Literal["no", "on_failure", "always"]
MtlsMode = Literal["strict", "permissive"]
# What the app speaks on $PORT: "http2" and "grpc" mean h2c with prior knowledge.
ServiceProtocol = Literal["http1", "http2", "grpc"]


@attrs.frozen(kw_only=True)
class Origin:
    """Where in the user's code a declaration was made."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


UNKNOWN_ORIGIN = Origin(file="<unknown>", line=0)


@attrs.frozen(kw_only=True)
class HealthCheck:
    """A readiness/liveness probe, with Kubernetes' knobs and laptop defaults.

    ``kind == "http"``: GET ``path`` on the app's port, 2xx/3xx is a success.
    ``kind == "tcp"``: a TCP connect to the app's port is a success.
    Times are in seconds.
    """

    kind: HealthKind = "http"
    path: str = "/"
    period: float = 1.0
    timeout: float = 1.0
    initial_delay: float = 0.0
    success_threshold: int = 1
    failure_threshold: int = 3


@attrs.frozen(kw_only=True)
class RestartPolicy:
    """When a crashed app is started again, and how long to wait before it.

    The delay doubles from ``backoff_initial`` up to ``backoff_max``; it resets
    once an instance has stayed up for ``reset_after`` seconds.
    """

    mode: RestartMode = "always"
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    reset_after: float = 10.0


@attrs.frozen(kw_only=True)
class ServiceSpec:
    """One deployment of a service: a name, an optional version, N replicas.

    Several ``ServiceSpec`` may share a ``name`` with different ``version``s;
    together they are the service (Istio's subsets).
    """

    name: str
    command: str
    version: str | None = None
    replicas: int = 1
    env: dict[str, str] = attrs.field(factory=dict)
    cwd: str | None = None
    health: HealthCheck | None = None
    depends_on: tuple[str, ...] = ()
    upstreams: tuple[str, ...] = ()
    restart: RestartPolicy = RestartPolicy()
    watch: tuple[str, ...] = ()
    protocol: ServiceProtocol = "http1"
    origin: Origin = UNKNOWN_ORIGIN

    @property
    def key(self) -> str:
        """``name`` or ``name-version``: unique within a mesh, used in instance ids."""
        return self.name if self.version is None else f"{self.name}-{self.version}"

    def instance_ids(self) -> list[str]:
        """The ids of this deployment's instances: ``<key>-0``, ``<key>-1``, ..."""
        return [f"{self.key}-{i}" for i in range(self.replicas)]


@attrs.frozen(kw_only=True)
class GatewayRoute:
    """Requests whose path starts with ``prefix`` go to ``service``."""

    prefix: str
    service: str
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class GatewaySpec:
    """The mesh's edge: an HTTP listener on ``host:port`` routing by path prefix.

    ``port == 0`` lets the operating system choose (useful in tests); the port
    actually bound is reported by ``meshkit status``.  ``tls_port``, when set,
    adds an HTTPS listener whose certificate (for ``localhost`` and
    ``127.0.0.1``) is signed by the mesh's local root CA.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    tls_port: int | None = None
    routes: tuple[GatewayRoute, ...] = ()
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class MeshSpec:
    """A whole validated Meshfile."""

    name: str
    file: str
    services: tuple[ServiceSpec, ...] = ()
    gateway: GatewaySpec | None = None
    mtls: MtlsMode = "strict"
    cert_lifetime: float = 24 * 3600.0
    origin: Origin = UNKNOWN_ORIGIN
    routes: tuple[RouteSpec, ...] = ()
    policies: tuple[PolicySpec, ...] = ()

    def service_names(self) -> list[str]:
        """Distinct service names, in declaration order."""
        seen: dict[str, None] = {}
        for svc in self.services:
            seen.setdefault(svc.name, None)
        return list(seen)

    def deployments_of(self, name: str) -> list[ServiceSpec]:
        """Every version of the service called ``name``."""
        return [svc for svc in self.services if svc.name == name]


# --- L7 traffic management: routes (Istio's VirtualService) -----------------

HeaderMatchKind = Literal["exact", "prefix", "regex", "present", "absent"]
QueryMatchKind = Literal["exact", "regex", "present"]
PathMatchKind = Literal["any", "exact", "prefix", "regex"]
LoadBalancerKind = Literal["round_robin", "least_request"]

DEFAULT_ROUTE_TIMEOUT = 15.0
"""Seconds a request may take, retries included, unless its route says otherwise (Envoy)."""


@attrs.frozen(kw_only=True)
class HeaderMatcher:
    """A condition on one request header; ``name`` is lower-case."""

    name: str
    kind: HeaderMatchKind = "exact"
    value: str = ""


@attrs.frozen(kw_only=True)
class QueryMatcher:
    """A condition on one query parameter of the request target."""

    name: str
    kind: QueryMatchKind = "exact"
    value: str = ""


@attrs.frozen(kw_only=True)
class MatchSpec:
    """What a request must look like for a rule to apply; every condition must hold."""

    path_kind: PathMatchKind = "any"
    path: str = ""
    methods: tuple[str, ...] = ()
    headers: tuple[HeaderMatcher, ...] = ()
    query: tuple[QueryMatcher, ...] = ()


@attrs.frozen(kw_only=True)
class HeaderOpsSpec:
    """Header edits: ``set`` replaces, ``add`` appends, ``remove`` deletes (names lower-case)."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class RetrySpec:
    """Retries of a route: up to ``attempts`` retries after the first try.

    ``retry_on`` holds conditions (``5xx``, ``gateway-error``, ``connect-failure``,
    ``refused-stream``, ``reset``) and gRPC status names (``unavailable`` ...);
    ``status_codes`` lists further HTTP statuses worth a retry.
    """

    attempts: int = 2
    per_try_timeout: float | None = None
    retry_on: tuple[str, ...] = ("gateway-error", "connect-failure", "refused-stream", "reset")
    status_codes: tuple[int, ...] = ()
    backoff_base: float = 0.025
    backoff_max: float = 0.25
    retry_non_idempotent: bool = False
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class FaultSpec:
    """Injected failure: a delay and/or an abort, each for a percentage of requests.

    ``abort_status`` is an HTTP status, ``abort_grpc`` a gRPC status name; when
    ``headers`` is not empty only requests matching all of them are affected.
    """

    delay: float = 0.0
    delay_percent: float = 0.0
    abort_status: int | None = None
    abort_grpc: str | None = None
    abort_percent: float = 0.0
    headers: tuple[HeaderMatcher, ...] = ()
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class MirrorSpec:
    """Copy ``percent`` of requests, fire and forget, to ``version`` of the same service."""

    version: str | None
    percent: float = 100.0
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class WeightedVersionSpec:
    """A share of traffic for one version (``None``: every version, round robin)."""

    version: str | None
    weight: int = 100


@attrs.frozen(kw_only=True)
class ForwardSpec:
    """Send the request to the service, to versions chosen by weight."""

    kind: Literal["forward"] = "forward"
    versions: tuple[WeightedVersionSpec, ...] = (WeightedVersionSpec(version=None),)


@attrs.frozen(kw_only=True)
class RedirectSpec:
    """Answer with a redirect to ``path`` and/or ``host`` (the rest of the URL kept)."""

    kind: Literal["redirect"] = "redirect"
    path: str | None = None
    host: str | None = None
    status: int = 301


@attrs.frozen(kw_only=True)
class RespondSpec:
    """Answer directly with ``status`` and ``body``; the service is not called."""

    kind: Literal["respond"] = "respond"
    status: int = 200
    body: str = ""


RuleActionSpec = ForwardSpec | RedirectSpec | RespondSpec


@attrs.frozen(kw_only=True)
class RuleSpec:
    """One rule of a route; an option left ``None`` falls back to the route's."""

    match: MatchSpec
    action: RuleActionSpec
    timeout: float | None = None
    retry: RetrySpec | None = None
    fault: FaultSpec | None = None
    mirror: MirrorSpec | None = None
    rewrite_prefix: str | None = None
    request_headers: HeaderOpsSpec | None = None
    response_headers: HeaderOpsSpec | None = None
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class RouteSpec:
    """The rules for requests to ``service``: the first matching rule wins.

    Requests no rule matches go to ``default`` (every version when ``None``).
    The options here apply to every forwarding rule that does not set its own.
    """

    service: str
    rules: tuple[RuleSpec, ...] = ()
    default: ForwardSpec | None = None
    timeout: float = DEFAULT_ROUTE_TIMEOUT
    retry: RetrySpec | None = None
    fault: FaultSpec | None = None
    mirror: MirrorSpec | None = None
    request_headers: HeaderOpsSpec | None = None
    response_headers: HeaderOpsSpec | None = None
    origin: Origin = UNKNOWN_ORIGIN


# --- Resilience: destination policies (Istio's DestinationRule) -------------


@attrs.frozen(kw_only=True)
class BreakerSpec:
    """Circuit breaker limits per destination (Envoy's defaults)."""

    max_connections: int = 1024
    max_pending: int = 1024
    max_requests: int = 1024
    max_retries: int = 3
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class OutlierSpec:
    """Eject an instance after ``consecutive_errors`` failures in a row.

    It stays out ``base_ejection`` x (number of its ejections), at most
    ``max_ejection`` seconds; at most ``max_ejection_percent`` of the instances are
    out at once, and never the last one.
    """

    consecutive_errors: int = 5
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejection_percent: float = 50.0
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class BudgetSpec:
    """Retries allowed: ``percent`` of requests plus ``min_per_second``, over ``window`` s."""

    percent: float = 20.0
    min_per_second: float = 10.0
    window: float = 10.0
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class PolicySpec:
    """How requests to ``service`` are spread and protected."""

    service: str
    load_balancer: LoadBalancerKind = "round_robin"
    breaker: BreakerSpec = BreakerSpec()
    outlier: OutlierSpec = OutlierSpec()
    retry_budget: BudgetSpec = BudgetSpec()
    origin: Origin = UNKNOWN_ORIGIN
