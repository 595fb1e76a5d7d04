"""The Meshfile's resilience verbs: ``breaker``, ``outlier``, ``retry_budget`` and ``mesh.policy``.

They read like Istio's DestinationRule (``connectionPool``, ``outlierDetection``)
and Linkerd's retry budget; each returns a ``Declared``: its spec and the
type mistakes it noticed, reported by ``Mesh.policy``.
"""

from __future__ import annotations

from meshkit.api import LoadBalancerKind
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.checks.suggest import did_you_mean
from meshkit.dsl.evaluate.userframes import caller_origin
from meshkit.dsl.spec import BreakerSpec, BudgetSpec, Origin, OutlierSpec, PolicySpec
from meshkit.dsl.verbs.reader import ArgumentReader, Declared, Duration

LOAD_BALANCERS: tuple[LoadBalancerKind, ...] = ("round_robin", "least_request")


def breaker(
    *,
    max_connections: int = 1024,
    max_requests: int = 1024,
    max_retries: int = 3,
) -> Declared[BreakerSpec]:
    """Circuit breaker limits for a destination (Envoy's defaults).

    Past a limit the sidecar answers 503 with the flag ``UO`` at once instead of
    queueing: ``max_connections`` open to the service (a request that needs a
    new connection past it gets the 503), ``max_requests`` in flight,
    ``max_retries`` retries in flight.  There is no ``max_pending``: the sidecar
    never queues a request waiting for a connection.
    """
    origin = caller_origin()
    reader = ArgumentReader(origin=origin, subject="breaker(...)")
    spec = BreakerSpec(
        max_connections=reader.integer("max_connections", max_connections, fallback=1024),
        max_requests=reader.integer("max_requests", max_requests, fallback=1024),
        max_retries=reader.integer("max_retries", max_retries, fallback=3),
        origin=origin,
    )
    return reader.declared("breaker", spec)


def outlier(
    *,
    consecutive_errors: int = 5,
    base_ejection: Duration = "30s",
    max_ejection: Duration = "300s",
    max_ejection_percent: float = 50,
) -> Declared[OutlierSpec]:
    """Eject an instance after ``consecutive_errors`` 5xx or connect failures in a row.

    It is out for ``base_ejection`` times the number of times it was ejected, at
    most ``max_ejection``, then comes back by itself.  At most
    ``max_ejection_percent`` of the instances are out at once; the last healthy
    one never is.
    """
    origin = caller_origin()
    reader = ArgumentReader(origin=origin, subject="outlier(...)")
    spec = OutlierSpec(
        consecutive_errors=reader.integer("consecutive_errors", consecutive_errors, fallback=5),
        base_ejection=reader.duration("base_ejection", base_ejection, fallback=30.0),
        max_ejection=reader.duration("max_ejection", max_ejection, fallback=300.0),
        max_ejection_percent=reader.number(
            "max_ejection_percent", max_ejection_percent, fallback=50.0
        ),
        origin=origin,
    )
    return reader.declared("outlier", spec)


def retry_budget(
    *, percent: float = 20, min_per_second: float = 10, window: Duration = "10s"
) -> Declared[BudgetSpec]:
    """A retry budget (Linkerd's): retries at most ``percent`` of requests plus
    ``min_per_second``, counted over the last ``window``; past it, no retry.
    """
    origin = caller_origin()
    reader = ArgumentReader(origin=origin, subject="retry_budget(...)")
    spec = BudgetSpec(
        percent=reader.number("percent", percent, fallback=20.0),
        min_per_second=reader.number("min_per_second", min_per_second, fallback=10.0),
        window=reader.duration("window", window, fallback=10.0),
        origin=origin,
    )
    return reader.declared("retry_budget", spec)


def declare_policy(
    *,
    origin: Origin,
    service: str,
    load_balancer: object,
    breaker: object,
    outlier: object,
    retry_budget: object,
) -> tuple[PolicySpec, list[Problem]]:
    """The ``PolicySpec`` of one ``mesh.policy(...)`` call and every type mistake in it."""
    reader = ArgumentReader(origin=origin, subject=f"policy {service!r}")
    balancer: LoadBalancerKind = "round_robin"
    if load_balancer == "least_request":
        balancer = "least_request"
    elif load_balancer != "round_robin":
        hint = did_you_mean(load_balancer, LOAD_BALANCERS) if isinstance(load_balancer, str) else ""
        reader.fail(
            f"load_balancer {load_balancer!r} is not one of 'round_robin', 'least_request'{hint}"
        )
    breaker_part = reader.part("breaker", breaker, BreakerSpec, "breaker")
    outlier_part = reader.part("outlier", outlier, OutlierSpec, "outlier")
    budget_part = reader.part("retry_budget", retry_budget, BudgetSpec, "retry_budget")
    spec = PolicySpec(
        service=service,
        load_balancer=balancer,
        breaker=BreakerSpec() if breaker_part is None else breaker_part.spec,
        outlier=OutlierSpec() if outlier_part is None else outlier_part.spec,
        retry_budget=BudgetSpec() if budget_part is None else budget_part.spec,
        origin=origin,
    )
    parts = (breaker_part, outlier_part, budget_part)
    nested = [problem for part in parts if part is not None for problem in part.problems]
    return spec, [*reader.problems, *nested]
