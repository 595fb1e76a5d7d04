"""The options a route and its rules share: timeout, retry, fault, mirror, header edits."""

from __future__ import annotations

from typing import Any, NamedTuple

from meshkit.api import HeaderOps
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.spec import FaultSpec, MirrorSpec, RetrySpec
from meshkit.dsl.verbs.reader import ArgumentReader, Declared


class RawOptions(NamedTuple):
    """The options exactly as a verb was given them, not yet read."""

    timeout: object
    retry: object
    fault: object
    mirror: object
    request_headers: object
    response_headers: object


# The options made by a verb: the option, its type and the verb (for the error).
_PARTS: tuple[tuple[str, type, str], ...] = (
    ("retry", RetrySpec, "retry"),
    ("fault", FaultSpec, "fault"),
    ("mirror", MirrorSpec, "mirror"),
    ("request_headers", HeaderOps, "headers"),
    ("response_headers", HeaderOps, "headers"),
)


def read_options(reader: ArgumentReader, raw: RawOptions) -> tuple[dict[str, Any], list[Problem]]:
    """The options as keyword arguments of ``RuleSpec`` or ``RouteSpec``, and their problems."""
    fields: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, kind, verb in _PARTS:
        part: Declared[Any] | None = reader.part(name, getattr(raw, name), kind, verb)
        fields[name] = None if part is None else part.spec
        if part is not None:
            problems.extend(part.problems)
    fields["timeout"] = reader.optional_duration("timeout", raw.timeout)
    return fields, problems
