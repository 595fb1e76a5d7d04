"""The Meshfile's traffic verbs: ``match``, ``split``, ``retry``, ``fault``, ``mirror``,
``headers``, and ``mesh.route``'s reading of them.

They read like Istio's VirtualService and DestinationRule::

    mesh.route("catalog",
        match(headers={"x-canary": "1"}).to(version="v2"),
        match(path="/old").redirect(path="/items", status=301),
        default=split(v1=90, v2=10), timeout="2s", retry=retry(attempts=3))
    mesh.policy("catalog", load_balancer="least_request", breaker=breaker(max_requests=100))

Each verb returns a ``Declared``: the spec it built and the type
mistakes it noticed (as ``Problem``s at the user's line); ``Mesh.route`` and
``Mesh.policy`` report them, so a verb never raises.  Whether the values make
sense (known versions, weights summing to 100, regexes that compile) is decided
by ``meshkit.dsl.checks.traffic``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from meshkit.api import (
    DirectResponse,
    Forward,
    HeaderOps,
    PathMatchKind,
    Redirect,
    RequestMatch,
    WeightedVersion,
)
from meshkit.dsl.checks.problems import Problem, describe_value
from meshkit.dsl.evaluate.userframes import caller_origin
from meshkit.dsl.spec import FaultSpec, MirrorSpec, Origin, RetrySpec, RuleSpec
from meshkit.dsl.verbs.matchers import ValueMatcher, header_matchers, query_matchers
from meshkit.dsl.verbs.options import RawOptions, read_options
from meshkit.dsl.verbs.reader import ArgumentReader, Declared, Duration


def headers(
    *,
    set: Mapping[str, str] | None = None,
    add: Mapping[str, str] | None = None,
    remove: Iterable[str] = (),
) -> Declared[HeaderOps]:
    """Header edits for requests or responses: ``set`` replaces, ``add`` appends, ``remove`` drops."""
    reader = ArgumentReader(origin=caller_origin(), subject="headers(...)")
    spec = HeaderOps(
        set=reader.pairs("set", set),
        add=reader.pairs("add", add),
        remove=tuple(name.lower() for name in reader.names("remove", remove)),
    )
    return reader.declared("headers", spec)


def retry(
    *,
    attempts: int = 2,
    per_try_timeout: Duration | None = None,
    retry_on: Iterable[str | int] = RetrySpec().retry_on,
    backoff: Duration = "25ms",
    max_backoff: Duration = "250ms",
    retry_non_idempotent: bool = False,
) -> Declared[RetrySpec]:
    """Retry a failed request up to ``attempts`` more times (Istio's ``attempts``).

    ``retry_on`` names the failures worth a retry: ``"5xx"``, ``"gateway-error"``
    (502/503/504), ``"connect-failure"``, ``"refused-stream"``, ``"reset"``, status
    codes such as ``429``, and gRPC statuses (``"unavailable"``,
    ``"resource-exhausted"``, ``"deadline-exceeded"``, ``"cancelled"``,
    ``"internal"``).  Waits grow from ``backoff`` to ``max_backoff`` with full
    jitter; another instance is preferred.  Only idempotent methods are retried
    unless ``retry_non_idempotent=True``; bodies over 64 KiB never are.
    """
    origin = caller_origin()
    reader = ArgumentReader(origin=origin, subject="retry(...)")
    conditions: list[str] = []
    codes: list[int] = []
    given: object = retry_on
    items: Iterable[object] = ()
    if isinstance(given, str | int):
        items = (given,)
    elif isinstance(given, Iterable):
        items = given
    else:
        reader.fail(f"retry_on must be a list, got {describe_value(given)}")
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            codes.append(item)
        elif isinstance(item, str) and item.isdigit():
            codes.append(int(item))
        elif isinstance(item, str):
            conditions.append(item)
        else:
            reader.fail(f"retry_on entries must be strings or status codes, got {item!r}")
    flag: object = retry_non_idempotent
    if not isinstance(flag, bool):
        reader.fail(f"retry_non_idempotent must be True or False, got {flag!r}")
    spec = RetrySpec(
        attempts=reader.integer("attempts", attempts, fallback=1),
        per_try_timeout=reader.optional_duration("per_try_timeout", per_try_timeout),
        retry_on=tuple(conditions),
        status_codes=tuple(codes),
        backoff_base=reader.duration("backoff", backoff, fallback=0.025),
        backoff_max=reader.duration("max_backoff", max_backoff, fallback=0.25),
        retry_non_idempotent=retry_non_idempotent is True,
        origin=origin,
    )
    return reader.declared("retry", spec)


def fault(
    *,
    delay: Duration | None = None,
    abort: int | str | None = None,
    percent: float = 100,
    delay_percent: float | None = None,
    abort_percent: float | None = None,
    headers: Mapping[str, str | ValueMatcher] | None = None,
) -> Declared[FaultSpec]:
    """Inject a failure: wait ``delay`` and/or answer ``abort`` without calling the service.

    ``abort`` is an HTTP status (``503``) or a gRPC status name (``"unavailable"``).
    ``percent`` of requests are affected (``delay_percent``/``abort_percent``
    set each part apart); with ``headers``, only requests matching them.
    """
    origin = caller_origin()
    reader = ArgumentReader(origin=origin, subject="fault(...)")
    share = reader.number("percent", percent, fallback=100.0)
    status: int | None = None
    grpc: str | None = None
    if isinstance(abort, int) and not isinstance(abort, bool):
        status = abort
    elif isinstance(abort, str):
        grpc = abort
    elif abort is not None:
        reader.fail(f"abort must be an HTTP status or a gRPC status name, got {abort!r}")
    if delay is None and abort is None:
        reader.fail("says neither delay= nor abort=; it would do nothing")
    spec = FaultSpec(
        delay=0.0 if delay is None else reader.duration("delay", delay, fallback=0.0),
        delay_percent=0.0
        if delay is None
        else share
        if delay_percent is None
        else reader.number("delay_percent", delay_percent, fallback=share),
        abort_status=status,
        abort_grpc=grpc,
        abort_percent=0.0
        if abort is None
        else share
        if abort_percent is None
        else reader.number("abort_percent", abort_percent, fallback=share),
        headers=header_matchers(reader, "headers", headers),
        origin=origin,
    )
    return reader.declared("fault", spec)


def mirror(*, version: str | None = None, percent: float = 100) -> Declared[MirrorSpec]:
    """Copy ``percent`` of requests to ``version`` of the same service, fire and forget.

    The copy's answer is thrown away; the caller only ever sees the real one.
    """
    origin = caller_origin()
    reader = ArgumentReader(origin=origin, subject="mirror(...)")
    spec = MirrorSpec(
        version=reader.optional_text("version", version),
        percent=reader.number("percent", percent, fallback=100.0),
        origin=origin,
    )
    return reader.declared("mirror", spec)


def _weights(reader: ArgumentReader, value: Mapping[str, object]) -> Forward:
    versions: list[WeightedVersion] = []
    for version, weight in value.items():
        versions.append(
            WeightedVersion(
                version=reader.text("version", version),
                weight=reader.integer(f"weight of {version!r}", weight, fallback=0),
            )
        )
    return Forward(versions=tuple(versions))


def split(weights: Mapping[str, int] | None = None, /, **by_version: int) -> Declared[Forward]:
    """Weighted versions: ``split(v1=90, v2=10)`` (or ``split({"v1": 90, "v2": 10})``).

    Weights are whole percentages summing to 100; each request is sent to one
    version, chosen at random with those odds.
    """
    reader = ArgumentReader(origin=caller_origin(), subject="split(...)")
    merged: dict[str, object] = dict(weights or {})
    merged.update(by_version)
    if not merged:
        reader.fail("names no version (write split(v1=90, v2=10))")
    return reader.declared("split", _weights(reader, merged))


@attrs.frozen(kw_only=True)
class Match:
    """What ``match(...)`` returns; finish the rule with ``to``, ``split``, ``redirect`` or ``respond``."""

    spec: RequestMatch
    origin: Origin
    problems: tuple[Problem, ...] = ()

    def to(
        self,
        *,
        version: str | None = None,
        timeout: Duration | None = None,
        retry: Declared[RetrySpec] | None = None,
        fault: Declared[FaultSpec] | None = None,
        mirror: Declared[MirrorSpec] | None = None,
        rewrite_prefix: str | None = None,
        request_headers: Declared[HeaderOps] | None = None,
        response_headers: Declared[HeaderOps] | None = None,
    ) -> Declared[RuleSpec]:
        """Send matching requests to ``version`` (every version when omitted).

        The options override the route's for this rule; ``rewrite_prefix``
        replaces the matched path prefix (or the whole matched path).
        """
        reader = ArgumentReader(origin=caller_origin(), subject="match(...).to")
        action = Forward(
            versions=(WeightedVersion(version=reader.optional_text("version", version)),)
        )
        raw = RawOptions(timeout, retry, fault, mirror, request_headers, response_headers)
        return self._forward(reader, action, rewrite_prefix, raw)

    def split(
        self,
        weights: Mapping[str, int] | None = None,
        /,
        *,
        timeout: Duration | None = None,
        retry: Declared[RetrySpec] | None = None,
        fault: Declared[FaultSpec] | None = None,
        mirror: Declared[MirrorSpec] | None = None,
        rewrite_prefix: str | None = None,
        request_headers: Declared[HeaderOps] | None = None,
        response_headers: Declared[HeaderOps] | None = None,
        **by_version: int,
    ) -> Declared[RuleSpec]:
        """Send matching requests to versions by weight: ``.split(v1=50, v2=50)``."""
        reader = ArgumentReader(origin=caller_origin(), subject="match(...).split")
        merged: dict[str, object] = dict(weights or {})
        merged.update(by_version)
        if not merged:
            reader.fail("names no version (write .split(v1=50, v2=50))")
        raw = RawOptions(timeout, retry, fault, mirror, request_headers, response_headers)
        return self._forward(reader, _weights(reader, merged), rewrite_prefix, raw)

    def redirect(
        self, *, path: str | None = None, host: str | None = None, status: int = 301
    ) -> Declared[RuleSpec]:
        """Answer matching requests with a redirect (301, 302, 307 or 308) to ``path``/``host``."""
        reader = ArgumentReader(origin=caller_origin(), subject="match(...).redirect")
        if path is None and host is None:
            reader.fail("needs path= or host=")
        action = Redirect(
            path=reader.optional_text("path", path),
            host=reader.optional_text("host", host),
            status=reader.integer("status", status, fallback=301),
        )
        return self._finish(reader, RuleSpec(match=self.spec, action=action, origin=reader.origin))

    def respond(self, status: int, body: str = "") -> Declared[RuleSpec]:
        """Answer matching requests directly with ``status`` and ``body``."""
        reader = ArgumentReader(origin=caller_origin(), subject="match(...).respond")
        action = DirectResponse(
            status=reader.integer("status", status, fallback=200),
            body=reader.text("body", body),
        )
        return self._finish(reader, RuleSpec(match=self.spec, action=action, origin=reader.origin))

    def _forward(
        self, reader: ArgumentReader, action: Forward, rewrite_prefix: object, raw: RawOptions
    ) -> Declared[RuleSpec]:
        fields, problems = read_options(reader, raw)
        spec = RuleSpec(
            match=self.spec,
            action=attrs.evolve(
                action, rewrite_prefix=reader.optional_text("rewrite_prefix", rewrite_prefix)
            ),
            origin=reader.origin,
            **fields,
        )
        return self._finish(reader, spec, *problems)

    def _finish(self, reader: ArgumentReader, spec: RuleSpec, *more: Problem) -> Declared[RuleSpec]:
        return Declared(
            verb="match", spec=spec, problems=(*self.problems, *reader.problems, *more)
        )


def match(
    *,
    path: str | None = None,
    path_prefix: str | None = None,
    path_regex: str | None = None,
    method: str | Iterable[str] | None = None,
    headers: Mapping[str, str | ValueMatcher] | None = None,
    query: Mapping[str, str | ValueMatcher] | None = None,
) -> Match:
    """Which requests a rule applies to; every condition given must hold.

    At most one of ``path`` (exact), ``path_prefix`` and ``path_regex`` (the
    whole path, query excluded).  ``method`` is one method or a list.
    ``headers`` and ``query`` map names to an exact value or to ``prefix(...)``,
    ``regex(...)``, ``present()`` or ``absent()``.  ``match()`` matches everything.
    """
    origin = caller_origin()
    reader = ArgumentReader(origin=origin, subject="match(...)")
    given = [
        (kind, value)
        for kind, value in (("exact", path), ("prefix", path_prefix), ("regex", path_regex))
        if value is not None
    ]
    path_kind: PathMatchKind = "any"
    path_text = ""
    if len(given) > 1:
        reader.fail("give at most one of path=, path_prefix= and path_regex=")
    if given:
        kind, value = given[0]
        path_kind = "exact" if kind == "exact" else "prefix" if kind == "prefix" else "regex"
        path_text = reader.text(f"path{'' if kind == 'exact' else '_' + kind}", value)
    methods = () if method is None else reader.names("method", method)
    spec = RequestMatch(
        path_kind=path_kind,
        path=path_text,
        methods=tuple(m.upper() for m in methods),
        headers=header_matchers(reader, "headers", headers),
        query=query_matchers(reader, query),
    )
    return Match(spec=spec, origin=origin, problems=tuple(reader.problems))
