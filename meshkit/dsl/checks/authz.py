"""Whether a Meshfile's ``mesh.allow``/``mesh.deny`` policies make sense; pure.

Each problem is reported at the line of the call: a protected service or a
source that is not a service of the mesh (with a did-you-mean), a SPIFFE ID
that is not one, a bad path or header pattern, a bad CIDR, a method that is
not an upper-case HTTP token, two policies of one name.
"""

from __future__ import annotations

import re

from meshkit.api.authz import AuthzRule, cidr_problem, path_pattern_problem, pattern_problem
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.checks.suggest import did_you_mean
from meshkit.dsl.spec import GATEWAY_CALLER, AuthzSpec
from meshkit.dsl.verbs.collect import MeshDeclaration

_METHOD = re.compile(r"[A-Z][A-Z0-9_-]*")
_SPIFFE = re.compile(r"spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def authz_problems(mesh: MeshDeclaration) -> list[Problem]:
    """Every problem with the authorization policies of ``mesh``."""
    services = list(dict.fromkeys(service.name for service in mesh.services))
    problems: list[Problem] = []
    seen: dict[str, AuthzSpec] = {}
    for spec in mesh.authz:
        earlier = seen.setdefault(spec.name, spec)
        if earlier is not spec and earlier.service == spec.service:
            problems.append(
                Problem.at(
                    spec.origin,
                    f"{_subject(spec)}: a second policy named {spec.name!r} "
                    f"(the first is at line {earlier.origin.line}); give each its own name=",
                )
            )
        problems.extend(
            Problem.at(spec.origin, f"{_subject(spec)}: {message}")
            for message in _spec_problems(spec, services)
        )
        rule = spec.rule
        if not mesh.request_authentication and (
            rule.request_principals or rule.not_request_principals or rule.claims
        ):
            problems.append(
                Problem.at(
                    spec.origin,
                    f"{_subject(spec)}: request_principals/claims speak of a verified JWT, "
                    "but the mesh has no mesh.request_authentication(...)",
                )
            )
    return problems


def _subject(spec: AuthzSpec) -> str:
    return f"{'allow' if spec.action == 'ALLOW' else 'deny'} {spec.service!r}"


def _spec_problems(spec: AuthzSpec, services: list[str]) -> list[str]:
    found: list[str] = []
    if spec.service not in services:
        found.append(
            f"{spec.service!r} is not a service in this mesh{did_you_mean(spec.service, services)}"
        )
    found.extend(_source_problems(spec.rule, services))
    found.extend(_request_problems(spec.rule))
    return found


def _source_problems(rule: AuthzRule, services: list[str]) -> list[str]:
    found: list[str] = []
    callers = [*services, GATEWAY_CALLER]
    for field, values in (("source", rule.principals), ("not_source", rule.not_principals)):
        for value in values:
            if value.startswith("spiffe://"):
                if _SPIFFE.fullmatch(value) is None:
                    found.append(
                        f"{field} {value!r} is not a SPIFFE ID "
                        "(spiffe://<trust domain>/<path>, e.g. spiffe://meshkit.local/ns/shop/sa/web)"
                    )
            elif value not in callers:
                found.append(
                    f"{field} {value!r} is not a service of this mesh, 'gateway' or a SPIFFE ID"
                    f"{did_you_mean(value, callers)}"
                )
    for field, values in (("namespaces", rule.namespaces), ("not_namespaces", rule.not_namespaces)):
        found.extend(
            f"{field} {value!r} is not a mesh name (a lowercase DNS label)"
            for value in values
            if _NAMESPACE.fullmatch(value) is None
        )
    for field, values in (("ip_blocks", rule.ip_blocks), ("not_ip_blocks", rule.not_ip_blocks)):
        for block in values:
            problem = cidr_problem(block)
            if problem is not None:
                found.append(f"{field} {block!r} is not an IP address or CIDR block ({problem})")
    return found


def _request_problems(rule: AuthzRule) -> list[str]:
    found: list[str] = []
    for field, values in (("methods", rule.methods), ("not_methods", rule.not_methods)):
        for method in values:
            if _METHOD.fullmatch(method) is None:
                hint = f" (did you mean {method.upper()!r}?)" if method.upper() != method else ""
                found.append(f"{field} {method!r} is not an upper-case HTTP method{hint}")
    for field, values in (("paths", rule.paths), ("not_paths", rule.not_paths)):
        for path in values:
            problem = path_pattern_problem(path)
            if problem is not None:
                found.append(f"{field} {path!r} is not a path pattern: {problem}")
    for kind, conditions in (("headers", rule.headers), ("claims", rule.claims)):
        for condition in conditions:
            for field, values in ((kind, condition.values), (f"not_{kind}", condition.not_values)):
                found.extend(
                    f"{field} {condition.name!r}: {value!r} is not a pattern: {problem}"
                    for value in values
                    if (problem := pattern_problem(value)) is not None
                )
    for field, values in (
        ("request_principals", rule.request_principals),
        ("not_request_principals", rule.not_request_principals),
    ):
        found.extend(
            f"{field} {value!r} is not a pattern: {problem}"
            for value in values
            if (problem := pattern_problem(value)) is not None
        )
    return found
