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

from meshkit.api import (
    DEFAULT_ROUTE_TIMEOUT,
    BreakerLimits,
    BudgetSettings,
    FaultRule,
    Forward,
    HeaderOps,
    LoadBalancerKind,
    MirrorRule,
    OutlierSettings,
    RateLimit,
    RequestMatch,
    RetryRule,
    RouteAction,
)
from meshkit.api.authz import AuthzAction, AuthzRule
from meshkit.api.jwt import JwtRule

HealthKind = Literal["http", "tcp"]
RestartMode = Literal["no", "on_failure", "always"]
MtlsMode = Literal["strict", "permissive"]
# Who may call whom when no policy says: everyone ("open"), no one ("deny": every
# service denies what no ALLOW policy allows), or exactly the declared upstreams.
AuthorizationMode = Literal["open", "deny", "upstreams"]
GATEWAY_CALLER = "gateway"
"""How a policy's ``source`` names the gateway (its SPIFFE ID ends in ``/sa/gateway``)."""
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
    restart_policy: RestartPolicy = RestartPolicy()
    watch: tuple[str, ...] = ()
    protocol: ServiceProtocol = "http1"
    # The container image ``meshkit export`` deploys; ``meshkit up`` ignores it.
    image: str | None = None
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
    # Names the gateway answers as Host besides loopback (DNS rebinding guard).
    hosts: tuple[str, ...] = ()
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
    rate_limits: tuple[RateLimitSpec, ...] = ()
    authorization: AuthorizationMode = "open"
    authz: tuple[AuthzSpec, ...] = ()
    request_authentication: tuple[JwtSpec, ...] = ()

    def service_names(self) -> list[str]:
        """Distinct service names, in declaration order."""
        seen: dict[str, None] = {}
        for svc in self.services:
            seen.setdefault(svc.name, None)
        return list(seen)

    def deployments_of(self, name: str) -> list[ServiceSpec]:
        """Every version of the service called ``name``."""
        return [svc for svc in self.services if svc.name == name]

    def callers_of(self, name: str) -> list[str]:
        """The callers the Meshfile declares for ``name``: the services whose
        ``upstreams=`` name it, then ``"gateway"`` if the gateway routes to it."""
        callers = [svc.name for svc in self.services if name in svc.upstreams]
        if self.gateway is not None and any(r.service == name for r in self.gateway.routes):
            callers.append(GATEWAY_CALLER)
        return list(dict.fromkeys(callers))


# --- L7 traffic management: routes (Istio's VirtualService) -----------------
#
# The vocabulary is ``meshkit.api``'s; a Meshfile adds the origin (file:line) of
# the verb that built each part, and rules whose options are not yet resolved
# against their route's (``meshkit.registry.routes`` does that).


@attrs.frozen(kw_only=True)
class RetrySpec(RetryRule):
    """``retry(...)``: a ``RetryRule`` and where it was declared."""

    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class FaultSpec(FaultRule):
    """``fault(...)``: a ``FaultRule`` and where it was declared."""

    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class MirrorSpec(MirrorRule):
    """``mirror(...)``: a ``MirrorRule`` and where it was declared."""

    origin: Origin = UNKNOWN_ORIGIN


# The options a route and its rules share (fields of both ``RuleSpec`` and ``RouteSpec``).
ROUTE_OPTION_NAMES = ("timeout", "retry", "fault", "mirror", "request_headers", "response_headers")


@attrs.frozen(kw_only=True)
class RuleSpec:
    """One rule of a route; an option left ``None`` falls back to the route's."""

    match: RequestMatch
    action: RouteAction
    timeout: float | None = None
    retry: RetrySpec | None = None
    fault: FaultSpec | None = None
    mirror: MirrorSpec | None = None
    request_headers: HeaderOps | None = None
    response_headers: HeaderOps | None = None
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class RouteSpec:
    """The rules for requests to ``service``: the first matching rule wins.

    Requests no rule matches go to ``default`` (every version when ``None``).
    The options here apply to every forwarding rule that does not set its own.
    """

    service: str
    rules: tuple[RuleSpec, ...] = ()
    default: Forward | None = None
    timeout: float = DEFAULT_ROUTE_TIMEOUT
    retry: RetrySpec | None = None
    fault: FaultSpec | None = None
    mirror: MirrorSpec | None = None
    request_headers: HeaderOps | None = None
    response_headers: HeaderOps | None = None
    origin: Origin = UNKNOWN_ORIGIN


# --- Resilience: destination policies (Istio's DestinationRule) -------------


@attrs.frozen(kw_only=True)
class BreakerSpec(BreakerLimits):
    """``breaker(...)``: ``BreakerLimits`` and where they were declared."""

    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class OutlierSpec(OutlierSettings):
    """``outlier(...)``: ``OutlierSettings`` and where they were declared."""

    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class BudgetSpec(BudgetSettings):
    """``retry_budget(...)``: ``BudgetSettings`` and where they were declared."""

    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class PolicySpec:
    """``mesh.policy(...)``: how requests to ``service`` are spread and protected."""

    service: str
    load_balancer: LoadBalancerKind = "round_robin"
    breaker: BreakerSpec = BreakerSpec()
    outlier: OutlierSpec = OutlierSpec()
    retry_budget: BudgetSpec = BudgetSpec()
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class RateLimitSpec(RateLimit):
    """``mesh.rate_limit(...)``: a ``RateLimit`` and where it was declared."""

    origin: Origin = UNKNOWN_ORIGIN


# --- Authorization (Istio's AuthorizationPolicy) -----------------------------


@attrs.frozen(kw_only=True)
class AuthzSpec:
    """``mesh.allow(...)`` / ``mesh.deny(...)``: one policy of one rule on requests to ``service``.

    The rule's ``principals`` are as written: service names of the mesh,
    ``"gateway"``, or whole SPIFFE IDs (the compile step resolves the names).
    """

    name: str
    service: str
    action: AuthzAction
    rule: AuthzRule = attrs.field(factory=AuthzRule)
    origin: Origin = UNKNOWN_ORIGIN


@attrs.frozen(kw_only=True)
class JwtSpec:
    """``mesh.request_authentication(...)``: a ``JwtRule`` (its JWKS read from ``jwks_file``)."""

    rule: JwtRule
    jwks_file: str
    origin: Origin = UNKNOWN_ORIGIN
