"""The one vocabulary of routes and policies, shared by the DSL, the control plane
and the sidecar (as Envoy keeps its API types in one package).

Frozen, keyword-only attrs classes of plain data; cattrs (``meshkit.api.converter``)
alone turns them into JSON and back.  This package imports nothing else of meshkit.
"""

from __future__ import annotations

from meshkit.api.grpc import GRPC_STATUS_CODES, GRPC_STATUS_NAMES, grpc_status_of_http
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
    "LoadBalancerKind",
    "MirrorRule",
    "OutlierSettings",
    "PathMatchKind",
    "QueryMatch",
    "QueryMatchKind",
    "Redirect",
    "RequestMatch",
    "RetryRule",
    "RouteAction",
    "RouteRule",
    "RouteTable",
    "RuntimeFault",
    "WeightedVersion",
    "grpc_status_of_http",
]
