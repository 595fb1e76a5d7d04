"""Routes and policies of a Meshfile as the sidecars apply them; pure, no I/O.

The Meshfile already speaks ``meshkit.api``'s vocabulary; what is left here is
the real resolution.  ``route_tables(spec)`` gives one ``RouteTable`` per
service: the route's rules in order, each with the route-level options filled
in where the rule left them out, then a final catch-all rule for the route's
``default`` (every version, round robin, when none is given).  A service
without ``mesh.route`` gets just that catch-all, with the 15 s default timeout
and no retries.

``destination_policies(spec)`` gives one ``DestinationPolicy`` per service, the
api's defaults (round robin, Envoy's breaker limits, 5 errors / 30 s ejections,
Linkerd's retry budget) where the Meshfile says nothing.  Origins stay behind:
moving a declaration to another line changes no sidecar's config.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs
from attrs import AttrsInstance

from meshkit.api import (
    BreakerLimits,
    BudgetSettings,
    DestinationPolicy,
    FaultRule,
    Forward,
    HeaderOps,
    MirrorRule,
    OutlierSettings,
    RequestMatch,
    RetryRule,
    RouteRule,
    RouteTable,
)
from meshkit.dsl.spec import MeshSpec, PolicySpec, RouteSpec, RuleSpec

_Api = TypeVar("_Api", bound=AttrsInstance)


def route_tables(spec: MeshSpec) -> tuple[RouteTable, ...]:
    """One table per service of ``spec``, in declaration order."""
    routes = {route.service: route for route in spec.routes}
    tables: list[RouteTable] = []
    for service in spec.service_names():
        route = routes.get(service)
        if route is None:
            tables.append(RouteTable(service=service, rules=(RouteRule(),)))
        else:
            tables.append(route_table(route))
    return tuple(tables)


def route_table(route: RouteSpec) -> RouteTable:
    """The table of one declared route: its rules, then the catch-all default."""
    catch_all = RuleSpec(
        match=RequestMatch(), action=route.default if route.default is not None else Forward()
    )
    rules = (*route.rules, catch_all)
    return RouteTable(service=route.service, rules=tuple(_rule(rule, route) for rule in rules))


def destination_policies(spec: MeshSpec) -> tuple[DestinationPolicy, ...]:
    """One policy per service of ``spec``, in declaration order."""
    policies = {policy.service: policy for policy in spec.policies}
    return tuple(
        _policy(policies.get(service, PolicySpec(service=service)))
        for service in spec.service_names()
    )


def _policy(policy: PolicySpec) -> DestinationPolicy:
    return DestinationPolicy(
        service=policy.service,
        load_balancer=policy.load_balancer,
        breaker=_without_origin(policy.breaker, BreakerLimits),
        outlier=_without_origin(policy.outlier, OutlierSettings),
        retry_budget=_without_origin(policy.retry_budget, BudgetSettings),
    )


def _rule(rule: RuleSpec, route: RouteSpec) -> RouteRule:
    """``rule`` with each option it leaves out taken from ``route``.

    A redirect or direct response calls no service, so only the response
    headers apply to it.
    """
    response_headers = _first(rule.response_headers, route.response_headers)
    if not isinstance(rule.action, Forward):
        return RouteRule(
            match=rule.match, action=rule.action, response_headers=response_headers or HeaderOps()
        )
    retry = _first(rule.retry, route.retry)
    fault = _first(rule.fault, route.fault)
    mirror = _first(rule.mirror, route.mirror)
    return RouteRule(
        match=rule.match,
        action=rule.action,
        timeout=_first(rule.timeout, route.timeout),
        retry=None if retry is None else _without_origin(retry, RetryRule),
        fault=None if fault is None else _without_origin(fault, FaultRule),
        mirror=None if mirror is None else _without_origin(mirror, MirrorRule),
        request_headers=_first(rule.request_headers, route.request_headers) or HeaderOps(),
        response_headers=response_headers or HeaderOps(),
    )


_T = TypeVar("_T")


def _first(own: _T | None, inherited: _T) -> _T:
    return inherited if own is None else own


def _without_origin(declared: Any, api_class: type[_Api]) -> _Api:
    """The api value a Meshfile declaration (an api class plus its origin) stands for."""
    fields = attrs.fields(api_class)
    return api_class(**{field.name: getattr(declared, field.name) for field in fields})
