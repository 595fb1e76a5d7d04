"""Routes and policies of a Meshfile as the sidecars apply them; pure, no I/O.

``route_tables(spec)`` gives one ``RouteTable`` per service: the route's rules
in order, each with the route-level options filled in where the rule left them
out, then a final catch-all rule for the route's ``default`` (every version,
round robin, when none is given).  A service without ``mesh.route`` gets just
that catch-all, with the 15 s default timeout and no retries.

``destination_policies(spec)`` gives one ``DestinationPolicy`` per service, the
defaults (round robin, Envoy's breaker limits, 5 errors / 30 s ejections,
Linkerd's retry budget) where the Meshfile says nothing.
"""

from __future__ import annotations

from meshkit.dsl.spec import (
    FaultSpec,
    ForwardSpec,
    HeaderMatcher,
    HeaderOpsSpec,
    MatchSpec,
    MeshSpec,
    MirrorSpec,
    PolicySpec,
    RedirectSpec,
    RespondSpec,
    RetrySpec,
    RouteSpec,
    RuleSpec,
)
from meshkit.proxy.rules import (
    BreakerLimits,
    BudgetSettings,
    DestinationPolicy,
    DirectResponse,
    FaultRule,
    Forward,
    HeaderMatch,
    HeaderOps,
    MirrorRule,
    OutlierSettings,
    QueryMatch,
    Redirect,
    RequestMatch,
    RetryRule,
    RouteAction,
    RouteRule,
    RouteTable,
    WeightedVersion,
)


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
    rules = [_rule(rule, route) for rule in route.rules]
    default = route.default if route.default is not None else ForwardSpec()
    rules.append(
        RouteRule(
            match=RequestMatch(),
            action=_forward(default, rewrite_prefix=None),
            timeout=route.timeout,
            retry=_retry(route.retry),
            fault=_fault(route.fault),
            mirror=_mirror(route.mirror),
            request_headers=_header_ops(route.request_headers),
            response_headers=_header_ops(route.response_headers),
        )
    )
    return RouteTable(service=route.service, rules=tuple(rules))


def destination_policies(spec: MeshSpec) -> tuple[DestinationPolicy, ...]:
    """One policy per service of ``spec``, in declaration order."""
    policies = {policy.service: policy for policy in spec.policies}
    return tuple(
        _policy(policies.get(service, PolicySpec(service=service)))
        for service in spec.service_names()
    )


def _policy(policy: PolicySpec) -> DestinationPolicy:
    breaker, outlier, budget = policy.breaker, policy.outlier, policy.retry_budget
    return DestinationPolicy(
        service=policy.service,
        load_balancer=policy.load_balancer,
        breaker=BreakerLimits(
            max_connections=breaker.max_connections,
            max_pending=breaker.max_pending,
            max_requests=breaker.max_requests,
            max_retries=breaker.max_retries,
        ),
        outlier=OutlierSettings(
            consecutive_errors=outlier.consecutive_errors,
            base_ejection=outlier.base_ejection,
            max_ejection=outlier.max_ejection,
            max_ejection_percent=outlier.max_ejection_percent,
        ),
        retry_budget=BudgetSettings(
            percent=budget.percent, min_per_second=budget.min_per_second, window=budget.window
        ),
    )


def _rule(rule: RuleSpec, route: RouteSpec) -> RouteRule:
    response_headers = _header_ops(
        rule.response_headers if rule.response_headers is not None else route.response_headers
    )
    if not isinstance(rule.action, ForwardSpec):
        return RouteRule(
            match=_match(rule.match),
            action=_local_reply(rule.action),
            response_headers=response_headers,
        )
    return RouteRule(
        match=_match(rule.match),
        action=_forward(rule.action, rewrite_prefix=rule.rewrite_prefix),
        timeout=rule.timeout if rule.timeout is not None else route.timeout,
        retry=_retry(rule.retry if rule.retry is not None else route.retry),
        fault=_fault(rule.fault if rule.fault is not None else route.fault),
        mirror=_mirror(rule.mirror if rule.mirror is not None else route.mirror),
        request_headers=_header_ops(
            rule.request_headers if rule.request_headers is not None else route.request_headers
        ),
        response_headers=response_headers,
    )


def _local_reply(action: RedirectSpec | RespondSpec) -> RouteAction:
    if isinstance(action, RedirectSpec):
        return Redirect(path=action.path, host=action.host, status=action.status)
    return DirectResponse(status=action.status, body=action.body)


def _forward(action: ForwardSpec, *, rewrite_prefix: str | None) -> Forward:
    return Forward(
        versions=tuple(
            WeightedVersion(version=weighted.version, weight=weighted.weight)
            for weighted in action.versions
        ),
        rewrite_prefix=rewrite_prefix,
    )


def _header_matches(matchers: tuple[HeaderMatcher, ...]) -> tuple[HeaderMatch, ...]:
    return tuple(HeaderMatch(name=m.name, kind=m.kind, value=m.value) for m in matchers)


def _match(match: MatchSpec) -> RequestMatch:
    return RequestMatch(
        path_kind=match.path_kind,
        path=match.path,
        methods=match.methods,
        headers=_header_matches(match.headers),
        query=tuple(QueryMatch(name=q.name, kind=q.kind, value=q.value) for q in match.query),
    )


def _retry(retry: RetrySpec | None) -> RetryRule | None:
    if retry is None:
        return None
    return RetryRule(
        attempts=retry.attempts,
        per_try_timeout=retry.per_try_timeout,
        retry_on=retry.retry_on,
        status_codes=retry.status_codes,
        backoff_base=retry.backoff_base,
        backoff_max=retry.backoff_max,
        retry_non_idempotent=retry.retry_non_idempotent,
    )


def _fault(fault: FaultSpec | None) -> FaultRule | None:
    if fault is None:
        return None
    return FaultRule(
        delay=fault.delay,
        delay_percent=fault.delay_percent,
        abort_status=fault.abort_status,
        abort_grpc=fault.abort_grpc,
        abort_percent=fault.abort_percent,
        headers=_header_matches(fault.headers),
    )


def _mirror(mirror: MirrorSpec | None) -> MirrorRule | None:
    return None if mirror is None else MirrorRule(version=mirror.version, percent=mirror.percent)


def _header_ops(ops: HeaderOpsSpec | None) -> HeaderOps:
    if ops is None:
        return HeaderOps()
    return HeaderOps(set=ops.set, add=ops.add, remove=ops.remove)
