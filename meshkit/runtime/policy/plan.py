"""What ``meshkit up`` will run, and in which order.  Pure.

* ``restrict_spec`` keeps the services asked for on the command line plus
  everything they depend on (the ``depends_on`` closure).
* ``startup_order`` sorts service names so that each comes after its
  dependencies (declaration order otherwise); shutdown is the reverse.
"""

from __future__ import annotations

import attrs

from meshkit.dsl.spec import MeshSpec


class PlanError(Exception):
    """The services to run cannot be planned (unknown name, dependency cycle)."""


def dependencies_of(spec: MeshSpec, service: str) -> list[str]:
    deps: dict[str, None] = {}
    for deployment in spec.deployments_of(service):
        for dep in deployment.depends_on:
            deps.setdefault(dep, None)
    return list(deps)


def restrict_spec(spec: MeshSpec, services: tuple[str, ...] | list[str]) -> MeshSpec:
    """``spec`` with only ``services`` and their dependencies; all of it if empty."""
    if not services:
        return spec
    known = set(spec.service_names())
    unknown = [name for name in services if name not in known]
    if unknown:
        raise PlanError(
            f"no service called {', '.join(map(repr, unknown))} in mesh {spec.name!r}; "
            f"known services: {', '.join(sorted(known))}"
        )
    wanted: set[str] = set()
    pending = list(services)
    while pending:
        name = pending.pop()
        if name in wanted:
            continue
        wanted.add(name)
        pending.extend(dependencies_of(spec, name))
    return attrs.evolve(spec, services=tuple(svc for svc in spec.services if svc.name in wanted))


def startup_order(spec: MeshSpec) -> list[str]:
    """Service names, dependencies first.  Raises ``PlanError`` on a cycle."""
    names = spec.service_names()
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise PlanError(f"services depend on each other in a cycle: {cycle}")
        state[name] = "visiting"
        for dep in dependencies_of(spec, name):
            if dep in names:
                visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in names:
        visit(name, [])
    return order
