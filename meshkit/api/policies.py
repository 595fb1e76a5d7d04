"""Destination policies (Envoy's CDS, Istio's DestinationRule, in small): how
requests to a service are spread over its instances and protected.

The defaults are Envoy's circuit-breaker limits, Envoy's outlier detection
(5 errors in a row, 30 s ejections) and Linkerd's retry budget.
"""

from __future__ import annotations

from typing import Literal

import attrs

LoadBalancerKind = Literal["round_robin", "least_request"]


@attrs.frozen(kw_only=True)
class BreakerLimits:
    """Circuit breaker limits per destination; overflow is an immediate 503."""

    max_connections: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@attrs.frozen(kw_only=True)
class OutlierSettings:
    """Eject an instance after ``consecutive_errors`` failures in a row.

    It stays out ``base_ejection`` x (number of its ejections), at most
    ``max_ejection`` seconds; at most ``max_ejection_percent`` of the instances are
    out at once, and never the last one.
    """

    consecutive_errors: int = 5
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejection_percent: float = 50.0


@attrs.frozen(kw_only=True)
class BudgetSettings:
    """Retries allowed: ``percent`` of requests plus ``min_per_second``, over ``window`` s."""

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
