"""The one vocabulary of routes and policies, shared by the DSL, the control plane
and the sidecar (as Envoy keeps its API types in one package).

Frozen, keyword-only attrs classes of plain data; cattrs (``meshkit.api.converter``)
alone turns them into JSON and back.  This package imports nothing else of meshkit.
"""

from __future__ import annotations

from meshkit.api.grpc import GRPC_STATUS_CODES, GRPC_STATUS_NAMES, grpc_status_of_http
from meshkit.api.limits import LIMIT_KEYS, LimitKey, RateLimit, bucket_shape
from meshkit.api.policies import (
    BreakerLimits,
    BudgetSettings,
    DestinationPolicy,
    LoadBalancerKind,
    OutlierSettings,
)
from meshkit.api.routes import (
    DEFAULT_RETRY_ON,
    DEFAULT_ROUTE_TIMEOUT,
    MAX_RETRY_BODY_BYTES,
    DirectResponse,
    FaultRule,
    Forward,
    HeaderMatch,
    HeaderMatchKind,
    HeaderOps,
    MirrorRule,
    PathMatchKind,
    QueryMatch,
    QueryMatchKind,
    Redirect,
    RequestMatch,
    RetryRule,
    RouteAction,
    RouteRule,
    RouteTable,
    RuntimeFault,
    WeightedVersion,
)

__all__ = [
    "DEFAULT_RETRY_ON",
    "DEFAULT_ROUTE_TIMEOUT",
    "GRPC_STATUS_CODES",
    "GRPC_STATUS_NAMES",
    "LIMIT_KEYS",
    "MAX_RETRY_BODY_BYTES",
    "BreakerLimits",
    "BudgetSettings",
    "DestinationPolicy",
    "DirectResponse",
    "FaultRule",
    "Forward",
    "HeaderMatch",
    "HeaderMatchKind",
    "HeaderOps",
    "LimitKey",
    "LoadBalancerKind",
    "MirrorRule",
    "OutlierSettings",
    "PathMatchKind",
    "QueryMatch",
    "QueryMatchKind",
    "RateLimit",
    "Redirect",
    "RequestMatch",
    "RetryRule",
    "RouteAction",
    "RouteRule",
    "RouteTable",
    "RuntimeFault",
    "WeightedVersion",
    "bucket_shape",
    "grpc_status_of_http",
]
