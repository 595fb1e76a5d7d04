"""Routes (Envoy's RDS, Istio's VirtualService, in small): which rule a request
matches, where it goes, and the retry, fault, mirror and header options on the way.

Plain data: regular expressions travel as strings (compiled once per table by
``meshkit.proxy.policy.matching``), header names are lower-case, times are seconds.
"""

from __future__ import annotations

from typing import Literal

import attrs

HeaderMatchKind = Literal["exact", "prefix", "regex", "present", "absent"]
QueryMatchKind = Literal["exact", "regex", "present"]
PathMatchKind = Literal["any", "exact", "prefix", "regex"]

DEFAULT_ROUTE_TIMEOUT = 15.0
"""Seconds a request may take, retries included, unless its route says otherwise (Envoy)."""
MAX_RETRY_BODY_BYTES = 64 * 1024
"""Request bodies larger than this are streamed, never buffered, so never retried."""
DEFAULT_RETRY_ON = ("gateway-error", "connect-failure", "refused-stream", "reset")


@attrs.frozen(kw_only=True)
class HeaderMatch:
    """A condition on one request header; ``name`` is lower-case."""

    name: str
    kind: HeaderMatchKind = "exact"
    value: str = ""


@attrs.frozen(kw_only=True)
class QueryMatch:
    """A condition on one query parameter of the request target."""

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
    """Up to ``attempts`` retries after the first try (see ``meshkit.proxy.policy.retry``).

    ``retry_on`` holds conditions (``5xx``, ``gateway-error``, ``connect-failure``,
    ``refused-stream``, ``reset``) and gRPC status names (``unavailable`` ...);
    ``status_codes`` lists further HTTP statuses worth a retry.
    """

    attempts: int = 2
    per_try_timeout: float | None = None
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    status_codes: tuple[int, ...] = ()
    backoff_base: float = 0.025
    backoff_max: float = 0.25
    retry_non_idempotent: bool = False


@attrs.frozen(kw_only=True)
class FaultRule:
    """A delay for ``delay_percent`` and an abort for ``abort_percent`` of matching requests.

    ``abort_status`` is an HTTP status, ``abort_grpc`` a gRPC status name.  A
    request matches when every header condition holds and, with a
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
    """Copy ``percent`` of requests, fire and forget, to ``version`` (``None``: any version)."""

    version: str | None
    percent: float = 100.0


@attrs.frozen(kw_only=True)
class WeightedVersion:
    """A share of traffic for ``version`` (``None``: every version of the service)."""

    version: str | None
    weight: int = 100


@attrs.frozen(kw_only=True)
class Forward:
    """Send the request to the service, to versions chosen by weight.

    ``rewrite_prefix`` replaces the matched path prefix (or the whole matched path).
    """

    kind: Literal["forward"] = "forward"
    versions: tuple[WeightedVersion, ...] = (WeightedVersion(version=None),)
    rewrite_prefix: str | None = None


@attrs.frozen(kw_only=True)
class Redirect:
    """Answer with a redirect to ``path`` and/or ``host`` (the rest of the URL kept)."""

    kind: Literal["redirect"] = "redirect"
    path: str | None = None
    host: str | None = None
    status: int = 301


@attrs.frozen(kw_only=True)
class DirectResponse:
    """Answer directly with ``status`` and ``body``; the service is not called."""

    kind: Literal["respond"] = "respond"
    status: int = 200
    body: str = ""


RouteAction = Forward | Redirect | DirectResponse


@attrs.frozen(kw_only=True)
class RouteRule:
    """One rule, every option resolved: ``timeout == 0`` means no timeout."""

    match: RequestMatch = RequestMatch()
    action: RouteAction = Forward()
    timeout: float = DEFAULT_ROUTE_TIMEOUT
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
class RuntimeFault:
    """A fault on every request to ``service`` until ``expires_at`` (wall-clock seconds).

    Wall-clock, not monotonic, because it crosses processes: the control plane
    sets it, every sidecar compares it with its own ``time.time()``.
    """

    service: str
    fault: FaultRule
    expires_at: float
