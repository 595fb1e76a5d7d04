"""``mesh.route`` as Istio's VirtualService ``http`` rules; pure.

The rules keep meshkit's order (Istio also takes the first that matches) and
end with the catch-all default.  Each forwarding rule gets the route's
options where it sets none of its own, as the sidecars apply them
(``meshkit.registry.routes``): timeout (meshkit's 15 s default written out,
since Istio's is none), retries (``attempts: 0`` when the route asks for none,
since Istio retries twice by default), fault, mirror and header edits.
Redirects and direct responses carry the response header edits only.

Istio's fault injection has no header condition of its own, so a fault
limited to some headers becomes two rules: the same match with those headers
added and the fault, then the rule without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from meshkit.api import DirectResponse, Forward, HeaderMatch, HeaderOps, Redirect, RequestMatch
from meshkit.dsl.durations import format_duration
from meshkit.dsl.spec import (
    ROUTE_OPTION_NAMES,
    FaultSpec,
    RetrySpec,
    RouteSpec,
    RuleSpec,
)
from meshkit.export.model import Finding, Notes, istio_duration

# Retry conditions Envoy (and so Istio's retryOn) knows, in meshkit's spelling.
ISTIO_RETRY_CONDITIONS = frozenset(
    ("5xx", "gateway-error", "connect-failure", "refused-stream", "reset")
)
ISTIO_GRPC_RETRY_CONDITIONS = frozenset(
    ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")
)
ENVOY_BACKOFF_CAP = 10
"""Envoy caps retry back-off at 10 x its base; Istio has no field for the cap."""


def rule_options(rule: RuleSpec, route: RouteSpec) -> RouteSpec:
    """The route's options with the rule's own in their place: what one forwarding rule applies."""
    own = {name: getattr(rule, name) for name in ROUTE_OPTION_NAMES}
    return attrs.evolve(route, **{name: value for name, value in own.items() if value is not None})


def http_rules(route: RouteSpec, findings: list[Finding]) -> list[dict[str, Any]]:
    """Every ``http`` entry of the route's VirtualService, in order."""
    notes = _Notes(
        findings=findings, subject=f"route {route.service!r}", origin=route.origin, route=route
    )
    entries: list[dict[str, Any]] = []
    for number, rule in enumerate(route.rules, start=1):
        name = f"rule-{number}"
        condition = request_match(rule.match)
        if isinstance(rule.action, Forward):
            options = rule_options(rule, route)
            entries.extend(
                _forwarding(name, condition, rule.action, options, notes.at(rule.origin))
            )
        else:
            entries.append(_local_reply(name, condition, rule, route, notes.at(rule.origin)))
    default = route.default if route.default is not None else Forward()
    entries.extend(_forwarding("default", {}, default, route, notes.at(route.origin)))
    return entries


@attrs.frozen(kw_only=True)
class _Notes(Notes):
    """Where findings about one route go, and the line they point at."""

    route: RouteSpec


def request_match(match: RequestMatch) -> dict[str, Any]:
    """One Istio ``HTTPMatchRequest`` (every condition must hold), ``{}`` for any request."""
    condition: dict[str, Any] = {}
    if match.path_kind != "any":
        condition["uri"] = {match.path_kind: match.path}
    if len(match.methods) == 1:
        condition["method"] = {"exact": match.methods[0]}
    elif match.methods:
        condition["method"] = {"regex": "|".join(match.methods)}
    _add_headers(condition, match.headers)
    queries: dict[str, Any] = {}
    for query in match.query:
        queries[query.name] = (
            {"regex": ".*"} if query.kind == "present" else {query.kind: query.value}
        )
    if queries:
        condition["queryParams"] = queries
    return condition


def _add_headers(condition: dict[str, Any], matchers: Iterable[HeaderMatch]) -> bool:
    """Add header conditions to ``condition``; False when one names a header it already has."""
    for matcher in matchers:
        field = "withoutHeaders" if matcher.kind == "absent" else "headers"
        taken = {**condition.get("headers", {}), **condition.get("withoutHeaders", {})}
        if matcher.name in taken:
            return False
        string_match = (
            {} if matcher.kind in ("present", "absent") else {matcher.kind: matcher.value}
        )
        condition.setdefault(field, {})[matcher.name] = string_match
    return True


def destinations(service: str, action: Forward) -> list[dict[str, Any]]:
    """Istio's weighted destinations: a subset per version, the weight when there are several."""
    routes: list[dict[str, Any]] = []
    for weighted in action.versions:
        destination: dict[str, Any] = {"host": service}
        if weighted.version is not None:
            destination["subset"] = weighted.version
        entry: dict[str, Any] = {"destination": destination}
        if len(action.versions) > 1:
            entry["weight"] = weighted.weight
        routes.append(entry)
    return routes


def _forwarding(
    name: str, condition: dict[str, Any], action: Forward, options: RouteSpec, notes: _Notes
) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {"name": name}
    if condition:
        entry["match"] = [condition]
    entry["route"] = destinations(notes.route.service, action)
    if action.rewrite_prefix is not None:
        entry["rewrite"] = {"uri": action.rewrite_prefix}
    if options.timeout > 0:  # 0 disables the timeout, as no timeout does in Istio
        entry["timeout"] = istio_duration(options.timeout)
    entry["retries"] = {"attempts": 0} if options.retry is None else retries(options.retry, notes)
    if options.mirror is not None:
        mirror: dict[str, Any] = {"host": notes.route.service}
        if options.mirror.version is not None:
            mirror["subset"] = options.mirror.version
        entry["mirror"] = mirror
        entry["mirrorPercentage"] = {"value": float(options.mirror.percent)}
    headers = _header_edits(options.request_headers, options.response_headers, notes)
    if headers:
        entry["headers"] = headers
    if options.fault is None:
        return [entry]
    return _with_fault(entry, condition, options.fault, notes)


def _with_fault(
    entry: dict[str, Any], condition: dict[str, Any], fault: FaultSpec, notes: _Notes
) -> list[dict[str, Any]]:
    injected = {**entry, "fault": fault_injection(fault)}
    if not fault.headers:
        return [injected]
    narrowed = {
        key: dict(value) if isinstance(value, dict) else value for key, value in condition.items()
    }
    if not _add_headers(narrowed, fault.headers):
        notes.add(
            "the fault's header condition names a header the rule already matches on",
            "the fault applies to every request of the rule",
        )
        return [injected]
    injected["name"] = f"{entry['name']}-fault"
    injected["match"] = [narrowed]
    return [injected, entry]


def fault_injection(fault: FaultSpec) -> dict[str, Any]:
    """Istio's ``HTTPFaultInjection``: a fixed delay and/or an abort, each for a percentage."""
    injection: dict[str, Any] = {}
    if fault.delay > 0:
        injection["delay"] = {
            "fixedDelay": istio_duration(fault.delay),
            "percentage": {"value": float(fault.delay_percent)},
        }
    abort: dict[str, Any] = {}
    if fault.abort_status is not None:
        abort["httpStatus"] = fault.abort_status
    elif fault.abort_grpc is not None:
        abort["grpcStatus"] = fault.abort_grpc.upper().replace("-", "_")
    if abort:
        abort["percentage"] = {"value": float(fault.abort_percent)}
        injection["abort"] = abort
    return injection


def retries(retry: RetrySpec, notes: _Notes) -> dict[str, Any]:
    """Istio's ``HTTPRetry``: attempts, ``retryOn``, per-try timeout and back-off."""
    conditions: list[str] = []
    for condition in retry.retry_on:
        if condition in ISTIO_RETRY_CONDITIONS or condition in ISTIO_GRPC_RETRY_CONDITIONS:
            conditions.append(condition)
        else:
            notes.add(
                f"retry_on {condition!r} is not a condition Istio retries on",
                "dropped from retryOn",
            )
    conditions.extend(str(code) for code in retry.status_codes)
    policy: dict[str, Any] = {"attempts": retry.attempts}
    if conditions:
        policy["retryOn"] = ",".join(conditions)
    if retry.per_try_timeout is not None:
        policy["perTryTimeout"] = istio_duration(retry.per_try_timeout)
    policy["backoff"] = istio_duration(retry.backoff_base)
    policy["retryIgnorePreviousHosts"] = True
    if abs(retry.backoff_max - ENVOY_BACKOFF_CAP * retry.backoff_base) > 1e-9:
        notes.add(
            f"max_backoff={format_duration(retry.backoff_max)} has no Istio field",
            f"Envoy caps back-off at {ENVOY_BACKOFF_CAP} x backoff "
            f"({istio_duration(ENVOY_BACKOFF_CAP * retry.backoff_base)})",
        )
    return policy


def _local_reply(
    name: str, condition: dict[str, Any], rule: RuleSpec, route: RouteSpec, notes: _Notes
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name}
    if condition:
        entry["match"] = [condition]
    action = rule.action
    if isinstance(action, Redirect):
        redirect: dict[str, Any] = {}
        if action.path is not None:
            redirect["uri"] = action.path
        if action.host is not None:
            redirect["authority"] = action.host
        redirect["redirectCode"] = action.status
        entry["redirect"] = redirect
    elif isinstance(action, DirectResponse):
        response: dict[str, Any] = {"status": action.status}
        if action.body:
            response["body"] = {"string": action.body}
        entry["directResponse"] = response
    headers = _header_edits(None, rule_options(rule, route).response_headers, notes)
    if headers:
        entry["headers"] = headers
    return entry


def _header_edits(
    request: HeaderOps | None, response: HeaderOps | None, notes: _Notes
) -> dict[str, Any]:
    edits: dict[str, Any] = {}
    for side, ops in (("request", request), ("response", response)):
        if ops is not None and (ops.set or ops.add or ops.remove):
            edits[side] = _header_operations(ops, side, notes)
    return edits


def _header_operations(ops: HeaderOps, side: str, notes: _Notes) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    if ops.set:
        operations["set"] = dict(ops.set)
    if ops.add:
        added = dict(ops.add)
        if len(added) < len(ops.add):
            notes.add(
                f"{side} headers add= the same header twice; Istio's add is a map",
                "the last value of each header kept",
            )
        operations["add"] = added
    if ops.remove:
        operations["remove"] = list(ops.remove)
    return operations
