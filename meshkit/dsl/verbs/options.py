"""The options a route and its rules share: timeout, retry, fault, mirror, header edits."""

from __future__ import annotations

from typing import Any, NamedTuple

import attrs

from meshkit.api import HeaderOps
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.spec import ROUTE_OPTION_NAMES, FaultSpec, MirrorSpec, RetrySpec
from meshkit.dsl.verbs.reader import ArgumentReader


class RawOptions(NamedTuple):
    """The options exactly as a verb was given them, not yet read."""

    timeout: object
    retry: object
    fault: object
    mirror: object
    request_headers: object
    response_headers: object


@attrs.frozen(kw_only=True)
class RouteOptions:
    """The options a route and its rules share, read and type-checked."""

    timeout: float | None = None
    retry: RetrySpec | None = None
    fault: FaultSpec | None = None
    mirror: MirrorSpec | None = None
    request_headers: HeaderOps | None = None
    response_headers: HeaderOps | None = None
    problems: tuple[Problem, ...] = ()

    @classmethod
    def read(cls, reader: ArgumentReader, raw: RawOptions) -> RouteOptions:
        """The options as given to a verb, read and type-checked."""
        retry_part = reader.part("retry", raw.retry, RetrySpec, "retry")
        fault_part = reader.part("fault", raw.fault, FaultSpec, "fault")
        mirror_part = reader.part("mirror", raw.mirror, MirrorSpec, "mirror")
        request_part = reader.part("request_headers", raw.request_headers, HeaderOps, "headers")
        response_part = reader.part("response_headers", raw.response_headers, HeaderOps, "headers")
        parts = (retry_part, fault_part, mirror_part, request_part, response_part)
        return cls(
            timeout=reader.optional_duration("timeout", raw.timeout),
            retry=None if retry_part is None else retry_part.spec,
            fault=None if fault_part is None else fault_part.spec,
            mirror=None if mirror_part is None else mirror_part.spec,
            request_headers=None if request_part is None else request_part.spec,
            response_headers=None if response_part is None else response_part.spec,
            problems=tuple(
                problem for part in parts if part is not None for problem in part.problems
            ),
        )

    def fields(self) -> dict[str, Any]:
        """The options as keyword arguments of ``RuleSpec`` or ``RouteSpec``."""
        return {name: getattr(self, name) for name in ROUTE_OPTION_NAMES}
