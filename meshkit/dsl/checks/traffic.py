"""Whether a mesh's routes and policies make sense; pure, every finding a ``Problem``.

Routes and policies must name a service of the mesh (once each), send traffic
only to versions that service declares, split by weights of 0 or more summing
to 100, use regular expressions that compile, real status codes, percentages in
0..100, and positive counts and durations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from meshkit.api import (
    GRPC_STATUS_NAMES,
    DirectResponse,
    Forward,
    HeaderMatch,
    HeaderOps,
    Redirect,
    RequestMatch,
)
from meshkit.api.regex import compile_pattern
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.checks.suggest import did_you_mean
from meshkit.dsl.spec import (
    FaultSpec,
    MirrorSpec,
    Origin,
    PolicySpec,
    RetrySpec,
    RouteSpec,
    RuleSpec,
    ServiceSpec,
)
from meshkit.dsl.verbs.collect import MeshDeclaration

RETRY_CONDITIONS = ("5xx", "gateway-error", "connect-failure", "refused-stream", "reset")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _field_value_problem(value: str) -> str | None:
    """What makes ``value`` no HTTP field value (RFC 9110 5.5), or None.

    The codecs refuse such a value from the network; one from the Meshfile would
    otherwise split an HTTP/1.1 head or break an HTTP/2 stream at the next sidecar.
    """
    if any(c in value for c in "\r\n\0"):
        return "contain CR, LF or NUL"
    if value != value.strip(" \t"):
        return "begin or end with a space or tab"
    return None


def traffic_problems(mesh: MeshDeclaration) -> list[Problem]:
    """Every problem with the routes and policies of ``mesh``."""
    versions = _versions_by_service(mesh.services)
    problems: list[Problem] = []
    problems.extend(_duplicates("route", [(r.service, r.origin) for r in mesh.routes]))
    problems.extend(_duplicates("policy", [(p.service, p.origin) for p in mesh.policies]))
    for route in mesh.routes:
        if route.service not in versions:
            problems.append(_unknown_service("route", route.service, route.origin, versions))
            continue
        problems.extend(_route_problems(route, versions[route.service]))
    for policy in mesh.policies:
        if policy.service not in versions:
            problems.append(_unknown_service("policy", policy.service, policy.origin, versions))
            continue
        problems.extend(_policy_problems(policy))
    problems.extend(_rate_limit_problems(mesh, versions))
    return problems


def _rate_limit_problems(mesh: MeshDeclaration, versions: dict[str, list[str]]) -> list[Problem]:
    """Each limit names a service of the mesh, a route that makes sense, and a scope once."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str, RequestMatch | None], Origin] = {}
    for limit in mesh.rate_limits:
        if limit.service not in versions:
            problems.append(_unknown_service("rate_limit", limit.service, limit.origin, versions))
            continue
        if limit.match is not None:
            checker = _RouteChecker(RouteSpec(service=limit.service), versions[limit.service])
            checker.match(limit.origin, limit.match)
            problems.extend(checker.problems)
        scope = (limit.service, limit.per, limit.match)
        earlier = seen.setdefault(scope, limit.origin)
        if earlier is not limit.origin:
            problems.append(
                Problem.at(
                    limit.origin,
                    f"rate_limit {limit.service!r}: a second limit on the same requests "
                    f"(the first is at line {earlier.line}); keep one",
                )
            )
    return problems


def _versions_by_service(services: Iterable[ServiceSpec]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for service in services:
        listed = found.setdefault(service.name, [])
        if service.version is not None and service.version not in listed:
            listed.append(service.version)
    return found


def _unknown_service(
    verb: str, service: str, origin: Origin, versions: dict[str, list[str]]
) -> Problem:
    hint = did_you_mean(service, list(versions))
    return Problem.at(
        origin, f"{verb} {service!r}: {service!r} is not a service in this mesh{hint}"
    )


def _duplicates(verb: str, entries: list[tuple[str, Origin]]) -> list[Problem]:
    first: dict[str, Origin] = {}
    problems: list[Problem] = []
    for service, origin in entries:
        if service in first:
            earlier = first[service]
            where = f"line {earlier.line}" if earlier.file == origin.file else str(earlier)
            problems.append(
                Problem.at(
                    origin,
                    f"a second {verb} for {service!r} (the first is at {where}); "
                    f"put every rule for a service in one mesh.{verb}(...)",
                )
            )
        else:
            first[service] = origin
    return problems


class _Checker:
    """Collects the problems of one route or policy, each at the line of the part at fault."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.problems: list[Problem] = []

    def fail(self, origin: Origin, message: str) -> None:
        self.problems.append(Problem.at(origin, f"{self.subject}: {message}"))

    def bounded(
        self,
        origin: Origin,
        what: str,
        value: float,
        *,
        at_least: float = 0,
        above: float | None = None,
        at_most: float | None = None,
        unit: str = "",
    ) -> None:
        """``value`` at least ``at_least`` (or above ``above``), and at most ``at_most``."""
        if at_most is not None:
            holds, rule = at_least <= value <= at_most, f"be between {at_least:g} and {at_most:g}"
        elif above is not None:
            holds, rule = value > above, f"be greater than {above:g}"
        elif at_least == 0:
            holds, rule = value >= 0, "not be negative"
        else:
            holds, rule = value >= at_least, f"be at least {at_least:g}"
        if not holds:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            self.fail(origin, f"{what} must {rule}, got {shown}{unit}")

    def percent(self, origin: Origin, what: str, value: float) -> None:
        self.bounded(origin, what, value, at_most=100)


class _RouteChecker(_Checker):
    """Collects the problems of one route, each at the line of the part at fault."""

    def __init__(self, route: RouteSpec, versions: list[str]) -> None:
        super().__init__(f"route {route.service!r}")
        self.route = route
        self.versions = versions

    def version(self, origin: Origin, version: str | None, *, what: str = "sends traffic") -> None:
        if version is None or version in self.versions:
            return
        known = ", ".join(self.versions) if self.versions else "none declared"
        self.problems.append(
            Problem.at(
                origin,
                f"route {self.route.service!r} {what} to unknown version {version!r} "
                f"(versions: {known}){did_you_mean(version, self.versions)}",
            )
        )

    def forward(self, origin: Origin, forward: Forward) -> None:
        for weighted in forward.versions:
            self.version(origin, weighted.version)
            # 0 is allowed (Istio's canary idiom: split(v1=100, v2=0), then flip it).
            if weighted.weight < 0:
                self.fail(
                    origin,
                    f"weight of {weighted.version!r} must be 0 or more, got {weighted.weight}",
                )
        if len(forward.versions) > 1:
            total = sum(weighted.weight for weighted in forward.versions)
            if total != 100:
                shown = " + ".join(str(weighted.weight) for weighted in forward.versions)
                self.fail(origin, f"split weights must sum to 100, got {shown} = {total}")
        prefix = forward.rewrite_prefix
        if prefix is not None and not prefix.startswith("/"):
            self.fail(origin, f"rewrite_prefix {prefix!r} must start with '/'")

    def pattern(self, origin: Origin, what: str, pattern: str) -> None:
        try:
            compile_pattern(pattern, what=what)
        except ValueError as error:
            self.fail(origin, str(error))

    def header_matchers(self, origin: Origin, matchers: Iterable[HeaderMatch]) -> None:
        for matcher in matchers:
            if not _TOKEN.fullmatch(matcher.name):
                self.fail(origin, f"header name {matcher.name!r} is not a valid HTTP header name")
            if matcher.kind == "regex":
                self.pattern(origin, f"header {matcher.name!r} regex", matcher.value)

    def match(self, origin: Origin, match: RequestMatch) -> None:
        if match.path_kind in ("exact", "prefix") and not match.path.startswith("/"):
            self.fail(origin, f"path {match.path!r} must start with '/'")
        if match.path_kind == "regex":
            self.pattern(origin, "path_regex", match.path)
        for method in match.methods:
            if not _TOKEN.fullmatch(method):
                self.fail(origin, f"method {method!r} is not an HTTP method")
        self.header_matchers(origin, match.headers)
        for query in match.query:
            if query.kind == "regex":
                self.pattern(origin, f"query {query.name!r} regex", query.value)

    def retry(self, retry: RetrySpec | None) -> None:
        if retry is None:
            return
        origin = retry.origin
        self.bounded(origin, "retry attempts", retry.attempts, at_least=1)
        if retry.per_try_timeout is not None:
            self.bounded(origin, "retry per_try_timeout", retry.per_try_timeout, above=0, unit="s")
        self.bounded(origin, "retry backoff", retry.backoff_base, above=0, unit="s")
        if retry.backoff_max < retry.backoff_base:
            self.fail(
                origin,
                f"retry max_backoff ({retry.backoff_max:g}s) must not be less than backoff "
                f"({retry.backoff_base:g}s)",
            )
        known = (*RETRY_CONDITIONS, *GRPC_STATUS_NAMES)
        for condition in retry.retry_on:
            if condition not in known:
                self.fail(
                    origin,
                    f"retry_on {condition!r} is not a retry condition (use one of "
                    f"{', '.join(RETRY_CONDITIONS)}, a status code or a gRPC status such as "
                    f"'unavailable'){did_you_mean(condition, known)}",
                )
        for code in retry.status_codes:
            if not 100 <= code <= 599:
                self.fail(origin, f"retry_on status {code} is not an HTTP status (100..599)")

    def fault(self, fault: FaultSpec | None) -> None:
        if fault is None:
            return
        origin = fault.origin
        self.bounded(origin, "fault delay", fault.delay, unit="s")
        self.percent(origin, "fault delay percent", fault.delay_percent)
        self.percent(origin, "fault abort percent", fault.abort_percent)
        if fault.abort_status is not None and not 200 <= fault.abort_status <= 599:
            self.fail(origin, f"fault abort {fault.abort_status} is not an HTTP status (200..599)")
        if fault.abort_grpc is not None and fault.abort_grpc not in GRPC_STATUS_NAMES:
            self.fail(
                origin,
                f"fault abort {fault.abort_grpc!r} is not a gRPC status name"
                f"{did_you_mean(fault.abort_grpc, GRPC_STATUS_NAMES)}",
            )
        self.header_matchers(origin, fault.headers)

    def mirror(self, mirror: MirrorSpec | None) -> None:
        if mirror is not None:
            self.version(mirror.origin, mirror.version, what="mirrors traffic")
            self.percent(mirror.origin, "mirror percent", mirror.percent)

    def header_ops(self, origin: Origin, what: str, ops: HeaderOps | None) -> None:
        if ops is None:
            return
        names = [name for name, _ in (*ops.set, *ops.add)] + list(ops.remove)
        for name in names:
            if not _TOKEN.fullmatch(name):
                self.fail(origin, f"{what}: {name!r} is not a valid HTTP header name")
        for name, value in (*ops.set, *ops.add):
            problem = _field_value_problem(value)
            if problem is not None:
                self.fail(origin, f"{what}: the value of {name!r} must not {problem}, got {value!r}")

    def rule(self, rule: RuleSpec) -> None:
        origin = rule.origin
        self.match(origin, rule.match)
        action = rule.action
        if isinstance(action, Forward):
            self.forward(origin, action)
        else:
            self.local_reply(rule, action)
        if rule.timeout is not None:
            self.bounded(origin, "timeout", rule.timeout, unit="s")
        self.retry(rule.retry)
        self.fault(rule.fault)
        self.mirror(rule.mirror)
        self.header_ops(origin, "request_headers", rule.request_headers)
        self.header_ops(origin, "response_headers", rule.response_headers)

    def local_reply(self, rule: RuleSpec, action: Redirect | DirectResponse) -> None:
        origin = rule.origin
        verb = "redirect" if isinstance(action, Redirect) else "respond"
        options = {
            "timeout": rule.timeout,
            "retries": rule.retry,
            "fault": rule.fault,
            "mirror": rule.mirror,
            "request_headers": rule.request_headers,
        }
        for name, value in options.items():
            if value is not None:
                self.fail(origin, f"a {verb} rule calls no service, so {name}= means nothing here")
        if isinstance(action, Redirect):
            if action.status not in REDIRECT_STATUSES:
                allowed = ", ".join(str(status) for status in REDIRECT_STATUSES)
                self.fail(origin, f"redirect status {action.status} is not one of {allowed}")
            if action.path is not None and not action.path.startswith("/"):
                self.fail(origin, f"redirect path {action.path!r} must start with '/'")
            if action.host is not None and not action.host.strip():
                self.fail(origin, "redirect host must not be empty")
            for field, text in (("path", action.path), ("host", action.host)):
                problem = None if text is None else _field_value_problem(text)
                if problem is not None:
                    self.fail(origin, f"redirect {field} must not {problem}, got {text!r}")
        elif not 200 <= action.status <= 599:
            self.fail(origin, f"respond status {action.status} is not an HTTP status (200..599)")


def _route_problems(route: RouteSpec, versions: list[str]) -> list[Problem]:
    checker = _RouteChecker(route, versions)
    for rule in route.rules:
        checker.rule(rule)
    if route.default is not None:
        checker.forward(route.origin, route.default)
    checker.bounded(route.origin, "timeout", route.timeout, unit="s")
    checker.retry(route.retry)
    checker.fault(route.fault)
    checker.mirror(route.mirror)
    checker.header_ops(route.origin, "request_headers", route.request_headers)
    checker.header_ops(route.origin, "response_headers", route.response_headers)
    return checker.problems


def _policy_problems(policy: PolicySpec) -> list[Problem]:
    checker = _Checker(f"policy {policy.service!r}")
    breaker, outlier, budget = policy.breaker, policy.outlier, policy.retry_budget
    for name in ("max_connections", "max_requests"):
        checker.bounded(breaker.origin, f"breaker {name}", getattr(breaker, name), at_least=1)
    checker.bounded(breaker.origin, "breaker max_retries", breaker.max_retries)
    errors, base = outlier.consecutive_errors, outlier.base_ejection
    checker.bounded(outlier.origin, "outlier consecutive_errors", errors, at_least=1)
    checker.bounded(outlier.origin, "outlier base_ejection", base, above=0, unit="s")
    if outlier.max_ejection < outlier.base_ejection:
        checker.fail(
            outlier.origin,
            f"outlier max_ejection ({outlier.max_ejection:g}s) must not be less than "
            f"base_ejection ({outlier.base_ejection:g}s)",
        )
    checker.percent(outlier.origin, "outlier max_ejection_percent", outlier.max_ejection_percent)
    checker.percent(budget.origin, "budget percent", budget.percent)
    checker.bounded(budget.origin, "budget min_per_second", budget.min_per_second)
    checker.bounded(budget.origin, "budget window", budget.window, above=0, unit="s")
    return checker.problems
