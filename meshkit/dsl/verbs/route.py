"""Reading ``mesh.route(...)``: its rules, its default and the options a route
and its rules share (timeout, retry, fault, mirror, header edits).
"""

from __future__ import annotations

from meshkit.api import DEFAULT_ROUTE_TIMEOUT, Forward, WeightedVersion
from meshkit.dsl.checks.problems import Problem, describe_value
from meshkit.dsl.spec import Origin, RouteSpec, RuleSpec
from meshkit.dsl.verbs.options import RawOptions, read_options
from meshkit.dsl.verbs.reader import ArgumentReader, Declared
from meshkit.dsl.verbs.traffic import Match


def read_rules(
    reader: ArgumentReader, rules: tuple[object, ...]
) -> tuple[list[RuleSpec], list[Problem]]:
    """The ``RuleSpec``s of ``mesh.route``'s positional rules, and their problems."""
    specs: list[RuleSpec] = []
    problems: list[Problem] = []
    for rule in rules:
        if isinstance(rule, Declared) and isinstance(rule.spec, RuleSpec):
            specs.append(rule.spec)
            problems.extend(rule.problems)
        elif isinstance(rule, Match):
            reader.fail(
                "a match(...) needs an action: add .to(...), .split(...), .redirect(...) "
                "or .respond(...)"
            )
        else:
            reader.fail(
                f"rules must be match(...).to(...) and the like, got {describe_value(rule)}"
            )
    return specs, problems


def read_default(reader: ArgumentReader, default: object) -> tuple[Forward | None, list[Problem]]:
    """``default=``: a version name, a ``split(...)`` or ``None`` (every version)."""
    if default is None:
        return None, []
    if isinstance(default, str):
        return Forward(versions=(WeightedVersion(version=default),)), []
    if isinstance(default, Declared) and isinstance(default.spec, Forward):
        return default.spec, list(default.problems)
    reader.fail(f"default must be a version name or split(...), got {describe_value(default)}")
    return None, []


def declare_route(
    *, origin: Origin, service: str, rules: tuple[object, ...], default: object, raw: RawOptions
) -> tuple[RouteSpec, list[Problem]]:
    """The ``RouteSpec`` of one ``mesh.route(...)`` call and every type mistake in it."""
    reader = ArgumentReader(origin=origin, subject=f"route {service!r}")
    rule_specs, problems = read_rules(reader, rules)
    default_spec, default_problems = read_default(reader, default)
    if raw.timeout is None:
        raw = raw._replace(timeout=DEFAULT_ROUTE_TIMEOUT)
    fields, option_problems = read_options(reader, raw)
    if fields["timeout"] is None:
        fields["timeout"] = DEFAULT_ROUTE_TIMEOUT
    spec = RouteSpec(
        service=service, rules=tuple(rule_specs), default=default_spec, origin=origin, **fields
    )
    return spec, [*reader.problems, *problems, *default_problems, *option_problems]
