"""The options a route and its rules share: timeout, retry, fault, mirror, header edits."""

from __future__ import annotations

import attrs

from meshkit.api import HeaderOps
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.spec import FaultSpec, MirrorSpec, RetrySpec
from meshkit.dsl.verbs.reader import ArgumentReader


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
    def read(
        cls,
        reader: ArgumentReader,
        *,
        timeout: object,
        retry: object,
        fault: object,
        mirror: object,
        request_headers: object,
        response_headers: object,
    ) -> RouteOptions:
        retry_part = reader.part("retry", retry, RetrySpec, "retry")
        fault_part = reader.part("fault", fault, FaultSpec, "fault")
        mirror_part = reader.part("mirror", mirror, MirrorSpec, "mirror")
        request_part = reader.part("request_headers", request_headers, HeaderOps, "headers")
        response_part = reader.part("response_headers", response_headers, HeaderOps, "headers")
        parts = (retry_part, fault_part, mirror_part, request_part, response_part)
        return cls(
            timeout=reader.optional_duration("timeout", timeout),
            retry=None if retry_part is None else retry_part.spec,
            fault=None if fault_part is None else fault_part.spec,
            mirror=None if mirror_part is None else mirror_part.spec,
            request_headers=None if request_part is None else request_part.spec,
            response_headers=None if response_part is None else response_part.spec,
            problems=tuple(
                problem for part in parts if part is not None for problem in part.problems
            ),
        )
