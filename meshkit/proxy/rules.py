"""What a sidecar applies for L7 traffic management and resilience (Envoy's RDS/CDS, in small).

The control plane compiles, per destination service, a ``RouteTable`` (ordered
rules, the first match wins, every option already resolved) and a
``DestinationPolicy`` (load balancing, circuit breaker, outlier detection,
retry budget); ``meshkit.registry.routes`` builds them from the Meshfile.
``RuntimeFault`` is the same ``FaultRule`` with an expiry, set while the mesh
runs, so the data path has one fault mechanism.

Plain data, cattrs-friendly (``meshkit.proxy.wire.converter``): regular
expressions travel as strings and are compiled once per table by
``meshkit.proxy.policy.matching``.  Header names are lower-case; times are seconds.
"""

from __future__ import annotations

from typing import Literal

import attrs

HeaderMatchKind = Literal["exact", "prefix", "regex", "present", "absent"]
QueryMatchKind = Literal["exact", "regex", "present"]
PathMatchKind = Literal["any", "exact", "prefix", "regex"]
LoadBalancerKind = Literal["round_robin", "least_request"]

DEFAULT_TIMEOUT = 15.0
MAX_RETRY_BODY_BYTES = 64 * 1024
"""Request bodies larger than this are streamed, never buffered, so never retried."""


@attrs.frozen(kw_only=True)
class HeaderMatch:
    name: str
    kind: HeaderMatchKind = "exact"
    value: str = ""


@attrs.frozen(kw_only=True)
class QueryMatch:
    name: str
    kind: QueryMatchKind = "exact"
    value: str = ""


@attrs.frozen(kw_only=True)
class RequestMatch:
    """Every condition must hold; the empty match matches every request."""

    path_kind: PathMatchKind = "any"
    path: str = ""
    methods: tuple[str, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()


@attrs.frozen(kw_only=True)
class HeaderOps:
    """``set`` replaces every value of a header, ``add`` appends one, ``remove`` drops all."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.set or self.add or self.remove)


@attrs.frozen(kw_only=True)
class RetryRule:
    """Up to ``attempts`` retries after the first try (see ``meshkit.proxy.policy.retry``)."""

    attempts: int = 2
    per_try_timeout: float | None = None
    retry_on: tuple[str, ...] = ("gateway-error", "connect-failure", "refused-stream", "reset")
    status_codes: tuple[int, ...] = ()
    backoff_base: float = 0.025
    backoff_max: float = 0.25
    retry_non_idempotent: bool = False


@attrs.frozen(kw_only=True)
class FaultRule:
    """A delay for ``delay_percent`` and an abort for ``abort_percent`` of matching requests.

    A request matches when every header condition holds and, with a
    ``path_prefix``, its path (the query left out) starts with it.
    """

    delay: float = 0.0
    delay_percent: float = 0.0
    abort_status: int | None = None
    abort_grpc: str | None = None
    abort_percent: float = 0.0
    headers: tuple[HeaderMatch, ...] = ()
    path_prefix: str | None = None


@attrs.frozen(kw_only=True)
class MirrorRule:
    """Copy ``percent`` of requests to ``version`` (``None``: any version)."""

    version: str | None
    percent: float = 100.0


@attrs.frozen(kw_only=True)
class WeightedVersion:
    """A share of traffic for ``version`` (``None``: every version of the service)."""

    version: str | None
    weight: int = 100


@attrs.frozen(kw_only=True)
class Forward:
    kind: Literal["forward"] = "forward"
    versions: tuple[WeightedVersion, ...] = (WeightedVersion(version=None),)
    rewrite_prefix: str | None = None


@attrs.frozen(kw_only=True)
class Redirect:
    kind: Literal["redirect"] = "redirect"
    path: str | None = None
    host: str | None = None
    status: int = 301


@attrs.frozen(kw_only=True)
class DirectResponse:
    kind: Literal["respond"] = "respond"
    status: int = 200
    body: str = ""


RouteAction = Forward | Redirect | DirectResponse


@attrs.frozen(kw_only=True)
class RouteRule:
    """One rule, every option resolved: ``timeout == 0`` means no timeout."""

    match: RequestMatch = RequestMatch()
    action: RouteAction = Forward()
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryRule | None = None
    fault: FaultRule | None = None
    mirror: MirrorRule | None = None
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()


@attrs.frozen(kw_only=True)
class RouteTable:
    """The rules for requests to ``service``, in order; the first that matches wins."""

    service: str
    rules: tuple[RouteRule, ...] = (RouteRule(),)


@attrs.frozen(kw_only=True)
class BreakerLimits:
    max_connections: int = 1024
    max_pending: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@attrs.frozen(kw_only=True)
class OutlierSettings:
    consecutive_errors: int = 5
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejection_percent: float = 50.0


@attrs.frozen(kw_only=True)
class BudgetSettings:
    percent: float = 20.0
    min_per_second: float = 10.0
    window: float = 10.0


@attrs.frozen(kw_only=True)
class DestinationPolicy:
    """How requests to ``service`` are spread over its instances and protected."""

    service: str
    load_balancer: LoadBalancerKind = "round_robin"
    breaker: BreakerLimits = BreakerLimits()
    outlier: OutlierSettings = OutlierSettings()
    retry_budget: BudgetSettings = BudgetSettings()


@attrs.frozen(kw_only=True)
class RuntimeFault:
    """A fault on every request to ``service`` until ``expires_at`` (wall-clock seconds).

    Wall-clock, not monotonic, because it crosses processes: the control plane
    sets it, every sidecar compares it with its own ``time.time()``.
    """

    service: str
    fault: FaultRule
    expires_at: float
