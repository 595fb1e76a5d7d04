"""Whether what a Meshfile declared makes a sound mesh; pure, no I/O but one injected check.

``validate(declarations)`` returns every ``Problem`` found: the type mistakes
noted while declaring, plus names that cannot be hostnames, references to
services that do not exist, duplicates, ranges, ``depends_on`` cycles and the
one-mesh/one-gateway rules.  Messages name the field at fault and, for a near
miss, the likely intended name.  ``build_spec`` turns declarations that
validated cleanly into the ``MeshSpec``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import attrs

from meshkit.dsl.checks.authz import authz_problems
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.checks.suggest import did_you_mean
from meshkit.dsl.checks.traffic import traffic_problems
from meshkit.dsl.spec import GatewaySpec, MeshSpec, Origin, ServiceSpec
from meshkit.dsl.verbs.collect import Declarations, MeshDeclaration

_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_DNS_LABEL_MAX = 63
_LABEL_RULE = "use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"


def is_dns_label(text: str) -> bool:
    """True for a lowercase DNS label: usable as a hostname and in env var names."""
    return len(text) <= _DNS_LABEL_MAX and _DNS_LABEL.fullmatch(text) is not None


def is_host_name(name: str) -> bool:
    """A DNS name such as ``shop.test``: DNS labels (any case) joined by dots, at most 253
    characters, not an IP address."""
    labels = name.lower().removesuffix(".").split(".")
    return (
        0 < len(name) <= 253
        and all(is_dns_label(label) for label in labels)
        and not all(label.isdigit() for label in labels)
    )


def _label_problem(origin: Origin, what: str, text: str) -> Problem | None:
    if is_dns_label(text):
        return None
    fixed = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    hint = f" (did you mean {fixed!r}?)" if fixed and fixed != text and is_dns_label(fixed) else ""
    return Problem.at(origin, f"{what} {text!r} is not a valid name: {_LABEL_RULE}{hint}")


def _where(origin: Origin, relative_to: Origin) -> str:
    """``line 3`` when both are in one file, else ``FILE:LINE``."""
    return f"line {origin.line}" if origin.file == relative_to.file else str(origin)


def validate(
    declarations: Declarations,
    *,
    directory_exists: Callable[[str], bool] = os.path.isdir,
) -> list[Problem]:
    """Every problem with ``declarations``, in the order a reader meets them."""
    problems = list(declarations.problems)
    if not declarations.meshes:
        problems.append(
            Problem(
                file=declarations.meshfile,
                line=1,
                message='no mesh is declared: add `mesh = Mesh("name")` (from meshkit import Mesh)',
            )
        )
    first = declarations.meshes[0] if declarations.meshes else None
    for extra in declarations.meshes[1:]:
        assert first is not None
        problems.append(
            Problem.at(
                extra.origin,
                f"a second Mesh({extra.name!r}) is declared (the first, {first.name!r}, is at "
                f"{_where(first.origin, extra.origin)}); a Meshfile declares exactly one mesh",
            )
        )
    for mesh in declarations.meshes:
        problems.extend(_mesh_problems(mesh, directory_exists=directory_exists))
    return sorted(
        problems,
        key=lambda problem: (problem.file != declarations.meshfile, problem.file, problem.line),
    )


def _mesh_problems(
    mesh: MeshDeclaration, *, directory_exists: Callable[[str], bool]
) -> list[Problem]:
    problems: list[Problem] = []
    name_problem = _label_problem(mesh.origin, "mesh name", mesh.name)
    if name_problem is not None:
        problems.append(name_problem)
    if mesh.cert_lifetime < 2:
        problems.append(
            Problem.at(
                mesh.origin,
                f"Mesh(...): cert_lifetime {mesh.cert_lifetime:g}s is too short "
                "(at least 2s; certificates are renewed at half their lifetime)",
            )
        )
    names = list(dict.fromkeys(service.name for service in mesh.services))
    for service in mesh.services:
        problems.extend(_service_problems(service, names, directory_exists=directory_exists))
    problems.extend(_duplicate_problems(mesh.services))
    problems.extend(_cycle_problems(mesh.services))
    problems.extend(_gateway_problems(mesh.gateways, names))
    problems.extend(traffic_problems(mesh))
    problems.extend(authz_problems(mesh))
    return problems


def _subject(service: ServiceSpec) -> str:
    version = "" if service.version is None else f" version {service.version!r}"
    return f"service {service.name!r}{version}"


def _service_problems(
    service: ServiceSpec, names: list[str], *, directory_exists: Callable[[str], bool]
) -> list[Problem]:
    subject = _subject(service)
    found: list[str] = []
    labels = [("service name", service.name)]
    if service.version is not None:
        labels.append(("version", service.version))
    for what, text in labels:
        label_problem = _label_problem(service.origin, f"{subject}: {what}", text)
        if label_problem is not None:
            found.append(label_problem.message)
    if not service.command.strip():
        found.append(f"{subject}: run must be a non-empty command")
    if service.replicas < 1:
        found.append(f"{subject}: replicas must be at least 1, got {service.replicas}")
    if service.cwd is not None and not directory_exists(service.cwd):
        found.append(f"{subject}: cwd {service.cwd!r} is not an existing directory")
    for field, references in (("depends_on", service.depends_on), ("upstreams", service.upstreams)):
        for reference in references:
            if field == "depends_on" and reference == service.name:
                found.append(f"{subject}: depends_on {reference!r} is the service itself")
            elif reference not in names:
                hint = did_you_mean(reference, names)
                singular = field.removesuffix("s")
                found.append(
                    f"{subject}: {singular} {reference!r} is not a service in this mesh{hint}"
                )
    found.extend(f"{subject}: {message}" for message in _health_messages(service))
    found.extend(f"{subject}: {message}" for message in _restart_messages(service))
    return [Problem.at(service.origin, message) for message in found]


def _health_messages(service: ServiceSpec) -> list[str]:
    health = service.health
    if health is None:
        return []
    found: list[str] = []
    if health.kind == "http" and not health.path.startswith("/"):
        found.append(f"health path {health.path!r} must start with '/'")
    for field, seconds in (("period", health.period), ("timeout", health.timeout)):
        if seconds <= 0:
            found.append(f"health {field} must be greater than 0, got {seconds:g}s")
    if health.initial_delay < 0:
        found.append(f"health initial_delay must not be negative, got {health.initial_delay:g}s")
    for field, count in (
        ("success_threshold", health.success_threshold),
        ("failure_threshold", health.failure_threshold),
    ):
        if count < 1:
            found.append(f"health {field} must be at least 1, got {count}")
    return found


def _restart_messages(service: ServiceSpec) -> list[str]:
    policy = service.restart_policy
    found: list[str] = []
    if policy.backoff_initial <= 0:
        found.append(f"restart backoff must be greater than 0, got {policy.backoff_initial:g}s")
    if policy.backoff_max < policy.backoff_initial:
        found.append(
            f"restart max_backoff ({policy.backoff_max:g}s) must not be less than "
            f"backoff ({policy.backoff_initial:g}s)"
        )
    if policy.reset_after < 0:
        found.append(f"restart reset_after must not be negative, got {policy.reset_after:g}s")
    return found


def _duplicate_problems(services: tuple[ServiceSpec, ...]) -> list[Problem]:
    problems: list[Problem] = []
    first_by_key: dict[tuple[str, str | None], ServiceSpec] = {}
    first_by_name: dict[str, ServiceSpec] = {}
    for service in services:
        key = (service.name, service.version)
        earlier = first_by_key.get(key)
        if earlier is not None:
            problems.append(
                Problem.at(
                    service.origin,
                    f"{_subject(service)} is declared twice (first at "
                    f"{_where(earlier.origin, service.origin)}); give each deployment its "
                    f"own version",
                )
            )
            continue
        first_by_key[key] = service
        same_name = first_by_name.setdefault(service.name, service)
        if same_name.protocol != service.protocol:
            problems.append(
                Problem.at(
                    service.origin,
                    f"{_subject(service)} speaks protocol={service.protocol!r} but "
                    f"{_subject(same_name)} (at {_where(same_name.origin, service.origin)}) "
                    f"speaks {same_name.protocol!r}; every version of a service speaks the "
                    f"same protocol",
                )
            )
        if (same_name.version is None) != (service.version is None):
            problems.append(
                Problem.at(
                    service.origin,
                    f"service {service.name!r} is declared both with and without a version "
                    f"(also at {_where(same_name.origin, service.origin)}); either every "
                    f"deployment of a service has a version or there is only one",
                )
            )
    return problems


def _cycle_problems(services: tuple[ServiceSpec, ...]) -> list[Problem]:
    order = list(dict.fromkeys(service.name for service in services))
    rank = {name: index for index, name in enumerate(order)}
    first_origin: dict[str, Origin] = {}
    edges: dict[str, list[str]] = {name: [] for name in order}
    for service in services:
        first_origin.setdefault(service.name, service.origin)
        for target in service.depends_on:
            if target in rank and target != service.name and target not in edges[service.name]:
                edges[service.name].append(target)
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()
    finished: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        path.append(name)
        for target in edges[name]:
            if target in path:
                cycle = path[path.index(target) :]
                if frozenset(cycle) not in seen_cycles:
                    seen_cycles.add(frozenset(cycle))
                    start = min(range(len(cycle)), key=lambda i: rank[cycle[i]])
                    cycles.append(cycle[start:] + cycle[:start])
            elif target not in finished:
                visit(target, path)
        path.pop()
        finished.add(name)

    for name in order:
        if name not in finished:
            visit(name, [])
    return [
        Problem.at(
            first_origin[cycle[0]],
            f"service {cycle[0]!r}: depends_on cycle {' -> '.join([*cycle, cycle[0]])}",
        )
        for cycle in cycles
    ]


def _gateway_problems(gateways: tuple[GatewaySpec, ...], names: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    for extra in gateways[1:]:
        problems.append(
            Problem.at(
                extra.origin,
                f"gateway: a second gateway is declared (the first is at "
                f"{_where(gateways[0].origin, extra.origin)}); a mesh has one gateway",
            )
        )
    for gateway in gateways:
        if not 0 <= gateway.port <= 65535:
            problems.append(
                Problem.at(
                    gateway.origin,
                    f"gateway: port {gateway.port} is not a TCP port (0..65535; 0 lets the "
                    f"system choose)",
                )
            )
        if gateway.tls_port is not None and not 0 <= gateway.tls_port <= 65535:
            problems.append(
                Problem.at(
                    gateway.origin,
                    f"gateway: tls_port {gateway.tls_port} is not a TCP port (0..65535; 0 lets "
                    "the system choose)",
                )
            )
        if not gateway.host.strip():
            problems.append(Problem.at(gateway.origin, "gateway: host must not be empty"))
        for route in gateway.routes:
            if not route.prefix.startswith("/"):
                problems.append(
                    Problem.at(
                        route.origin,
                        f"gateway: route prefix {route.prefix!r} must start with '/' "
                        f"(did you mean {'/' + route.prefix!r}?)",
                    )
                )
            if route.service not in names:
                problems.append(
                    Problem.at(
                        route.origin,
                        f"gateway: route {route.prefix!r} sends traffic to {route.service!r}, "
                        f"which is not a service in this mesh{did_you_mean(route.service, names)}",
                    )
                )
    return problems


def build_spec(declarations: Declarations) -> MeshSpec:
    """The ``MeshSpec`` of declarations that ``validate`` found no problem with."""
    if len(declarations.meshes) != 1:
        raise ValueError(f"expected exactly one mesh, got {len(declarations.meshes)}")
    mesh = declarations.meshes[0]
    return MeshSpec(**{field.name: getattr(mesh, field.name) for field in attrs.fields(MeshSpec)})
