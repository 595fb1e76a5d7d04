"""The Meshfile's traffic verbs: ``match``, ``split``, ``retry``, ``fault``, ``mirror``,
``headers``, ``breaker``, ``outlier``, ``budget`` and the header matchers
``prefix``, ``regex``, ``present``, ``absent``.

They read like Istio's VirtualService and DestinationRule::

    mesh.route("catalog",
        match(headers={"x-canary": "1"}).to(version="v2"),
        match(path="/old").redirect(path="/items", status=301),
        default=split(v1=90, v2=10), timeout="2s", retries=retry(attempts=3))
    mesh.policy("catalog", load_balancer="least_request", breaker=breaker(max_requests=100))

Each verb returns a small frozen value holding the spec it built and the type
mistakes it noticed (as ``Problem``s at the user's line); ``Mesh.route`` and
``Mesh.policy`` report them, so a verb never raises.  Whether the values make
sense (known versions, weights summing to 100, regexes that compile) is decided
by ``meshkit.dsl.traffic_checks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from meshkit.api import (
    DEFAULT_ROUTE_TIMEOUT,
    DirectResponse,
    Forward,
    HeaderMatch,
    HeaderOps,
    PathMatchKind,
    QueryMatch,
    Redirect,
    RequestMatch,
    WeightedVersion,
)
from meshkit.dsl.problems import Problem, describe_value
from meshkit.dsl.spec import FaultSpec, MirrorSpec, Origin, RetrySpec, RouteSpec, RuleSpec
from meshkit.dsl.userframes import caller_origin
from meshkit.dsl.verbreader import Duration, VerbReader


@attrs.frozen(kw_only=True)
class ValueMatcher:
    """A header or query condition before it knows its name: see ``prefix``, ``regex`` ..."""

    kind: str
    value: str = ""


def prefix(text: str) -> ValueMatcher:
    """Header condition: the value starts with ``text``."""
    return ValueMatcher(kind="prefix", value=text)


def regex(pattern: str) -> ValueMatcher:
    """Header or query condition: the whole value matches ``pattern`` (Python ``re``)."""
    return ValueMatcher(kind="regex", value=pattern)


def present() -> ValueMatcher:
    """Header or query condition: the header (or parameter) is there, whatever its value."""
    return ValueMatcher(kind="present")


def absent() -> ValueMatcher:
    """Header condition: the request does not carry the header."""
    return ValueMatcher(kind="absent")


_HEADER_KINDS = ("exact", "prefix", "regex", "present", "absent")
_QUERY_KINDS = ("exact", "regex", "present")


def _header_matchers(reader: VerbReader, field: str, value: object) -> tuple[HeaderMatch, ...]:
    found: list[HeaderMatch] = []
    for name, kind, text in _conditions(reader, field, value, _HEADER_KINDS):
        found.append(HeaderMatch(name=name.lower(), kind=kind, value=text))  # type: ignore[arg-type]
    return tuple(found)


def _query_matchers(reader: VerbReader, value: object) -> tuple[QueryMatch, ...]:
    found: list[QueryMatch] = []
    for name, kind, text in _conditions(reader, "query", value, _QUERY_KINDS):
        found.append(QueryMatch(name=name, kind=kind, value=text))  # type: ignore[arg-type]
    return tuple(found)


def _conditions(
    reader: VerbReader, field: str, value: object, kinds: tuple[str, ...]
) -> list[tuple[str, str, str]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        reader.fail(f"{field} must be a dict of name -> value, got {describe_value(value)}")
        return []
    found: list[tuple[str, str, str]] = []
    for name, condition in value.items():
        if not isinstance(name, str):
            reader.fail(f"{field}: name must be a string, got {describe_value(name)}")
        elif isinstance(condition, str):
            found.append((name, "exact", condition))
        elif isinstance(condition, ValueMatcher) and condition.kind in kinds:
            found.append((name, condition.kind, condition.value))
        else:
            helpers = ", ".join(f"{kind}()" for kind in kinds if kind != "exact")
            reader.fail(
                f"{field} {name!r} must be a string or one of {helpers}, "
                f"got {describe_value(condition)}"
            )
    return found


@attrs.frozen(kw_only=True)
class HeaderRules:
    """What ``headers(...)`` returns."""

    spec: HeaderOps
    problems: tuple[Problem, ...] = ()


def headers(
    *,
    set: Mapping[str, str] | None = None,
    add: Mapping[str, str] | None = None,
    remove: Iterable[str] = (),
) -> HeaderRules:
    """Header edits for requests or responses: ``set`` replaces, ``add`` appends, ``remove`` drops."""
    reader = VerbReader(origin=caller_origin(), subject="headers(...)")
    spec = HeaderOps(
        set=reader.pairs("set", set),
        add=reader.pairs("add", add),
        remove=tuple(name.lower() for name in reader.names("remove", remove)),
    )
    return HeaderRules(spec=spec, problems=tuple(reader.problems))


@attrs.frozen(kw_only=True)
class Retry:
    """What ``retry(...)`` returns."""

    spec: RetrySpec
    problems: tuple[Problem, ...] = ()


def retry(
    *,
    attempts: int = 2,
    per_try_timeout: Duration | None = None,
    retry_on: Iterable[str | int] = RetrySpec().retry_on,
    backoff: Duration = "25ms",
    max_backoff: Duration = "250ms",
    retry_non_idempotent: bool = False,
) -> Retry:
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
    reader = VerbReader(origin=origin, subject="retry(...)")
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
    return Retry(spec=spec, problems=tuple(reader.problems))


@attrs.frozen(kw_only=True)
class Fault:
    """What ``fault(...)`` returns."""

    spec: FaultSpec
    problems: tuple[Problem, ...] = ()


def fault(
    *,
    delay: Duration | None = None,
    abort: int | str | None = None,
    percent: float = 100,
    delay_percent: float | None = None,
    abort_percent: float | None = None,
    headers: Mapping[str, str | ValueMatcher] | None = None,
) -> Fault:
    """Inject a failure: wait ``delay`` and/or answer ``abort`` without calling the service.

    ``abort`` is an HTTP status (``503``) or a gRPC status name (``"unavailable"``).
    ``percent`` of requests are affected (``delay_percent``/``abort_percent``
    set each part apart); with ``headers``, only requests matching them.
    """
    origin = caller_origin()
    reader = VerbReader(origin=origin, subject="fault(...)")
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
        headers=_header_matchers(reader, "headers", headers),
        origin=origin,
    )
    return Fault(spec=spec, problems=tuple(reader.problems))


@attrs.frozen(kw_only=True)
class Mirror:
    """What ``mirror(...)`` returns."""

    spec: MirrorSpec
    problems: tuple[Problem, ...] = ()


def mirror(*, version: str | None = None, percent: float = 100) -> Mirror:
    """Copy ``percent`` of requests to ``version`` of the same service, fire and forget.

    The copy's answer is thrown away; the caller only ever sees the real one.
    """
    origin = caller_origin()
    reader = VerbReader(origin=origin, subject="mirror(...)")
    spec = MirrorSpec(
        version=reader.optional_text("version", version),
        percent=reader.number("percent", percent, fallback=100.0),
        origin=origin,
    )
    return Mirror(spec=spec, problems=tuple(reader.problems))


@attrs.frozen(kw_only=True)
class Split:
    """What ``split(...)`` returns: weighted versions of a service."""

    spec: Forward
    problems: tuple[Problem, ...] = ()


def _weights(reader: VerbReader, value: Mapping[str, object]) -> Forward:
    versions: list[WeightedVersion] = []
    for version, weight in value.items():
        versions.append(
            WeightedVersion(
                version=reader.text("version", version),
                weight=reader.integer(f"weight of {version!r}", weight, fallback=0),
            )
        )
    return Forward(versions=tuple(versions))


def split(weights: Mapping[str, int] | None = None, /, **by_version: int) -> Split:
    """Weighted versions: ``split(v1=90, v2=10)`` (or ``split({"v1": 90, "v2": 10})``).

    Weights are whole percentages summing to 100; each request is sent to one
    version, chosen at random with those odds.
    """
    reader = VerbReader(origin=caller_origin(), subject="split(...)")
    merged: dict[str, object] = dict(weights or {})
    merged.update(by_version)
    if not merged:
        reader.fail("names no version (write split(v1=90, v2=10))")
    return Split(spec=_weights(reader, merged), problems=tuple(reader.problems))


@attrs.frozen(kw_only=True)
class Rule:
    """One rule of ``mesh.route(...)``: what ``match(...).to/split/redirect/respond`` return."""

    spec: RuleSpec
    problems: tuple[Problem, ...] = ()


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
        retries: Retry | None = None,
        fault: Fault | None = None,
        mirror: Mirror | None = None,
        rewrite_prefix: str | None = None,
        request_headers: HeaderRules | None = None,
        response_headers: HeaderRules | None = None,
    ) -> Rule:
        """Send matching requests to ``version`` (every version when omitted).

        The options override the route's for this rule; ``rewrite_prefix``
        replaces the matched path prefix (or the whole matched path).
        """
        reader = VerbReader(origin=caller_origin(), subject="match(...).to")
        action = Forward(
            versions=(WeightedVersion(version=reader.optional_text("version", version)),)
        )
        return self._forward(
            reader, action, timeout, retries, fault, mirror, rewrite_prefix,
            request_headers, response_headers,
        )  # fmt: skip

    def split(
        self,
        weights: Mapping[str, int] | None = None,
        /,
        *,
        timeout: Duration | None = None,
        retries: Retry | None = None,
        fault: Fault | None = None,
        mirror: Mirror | None = None,
        rewrite_prefix: str | None = None,
        request_headers: HeaderRules | None = None,
        response_headers: HeaderRules | None = None,
        **by_version: int,
    ) -> Rule:
        """Send matching requests to versions by weight: ``.split(v1=50, v2=50)``."""
        reader = VerbReader(origin=caller_origin(), subject="match(...).split")
        merged: dict[str, object] = dict(weights or {})
        merged.update(by_version)
        if not merged:
            reader.fail("names no version (write .split(v1=50, v2=50))")
        return self._forward(
            reader, _weights(reader, merged), timeout, retries, fault, mirror,
            rewrite_prefix, request_headers, response_headers,
        )  # fmt: skip

    def redirect(
        self, *, path: str | None = None, host: str | None = None, status: int = 301
    ) -> Rule:
        """Answer matching requests with a redirect (301, 302, 307 or 308) to ``path``/``host``."""
        reader = VerbReader(origin=caller_origin(), subject="match(...).redirect")
        if path is None and host is None:
            reader.fail("needs path= or host=")
        action = Redirect(
            path=reader.optional_text("path", path),
            host=reader.optional_text("host", host),
            status=reader.integer("status", status, fallback=301),
        )
        return self._finish(reader, RuleSpec(match=self.spec, action=action, origin=reader.origin))

    def respond(self, status: int, body: str = "") -> Rule:
        """Answer matching requests directly with ``status`` and ``body``."""
        reader = VerbReader(origin=caller_origin(), subject="match(...).respond")
        action = DirectResponse(
            status=reader.integer("status", status, fallback=200),
            body=reader.text("body", body),
        )
        return self._finish(reader, RuleSpec(match=self.spec, action=action, origin=reader.origin))

    def _forward(
        self,
        reader: VerbReader,
        action: Forward,
        timeout: object,
        retries: object,
        fault: object,
        mirror: object,
        rewrite_prefix: object,
        request_headers: object,
        response_headers: object,
    ) -> Rule:
        options = RouteOptions.read(
            reader,
            timeout=timeout,
            retries=retries,
            fault=fault,
            mirror=mirror,
            request_headers=request_headers,
            response_headers=response_headers,
        )
        spec = RuleSpec(
            match=self.spec,
            action=attrs.evolve(
                action, rewrite_prefix=reader.optional_text("rewrite_prefix", rewrite_prefix)
            ),
            timeout=options.timeout,
            retry=options.retry,
            fault=options.fault,
            mirror=options.mirror,
            request_headers=options.request_headers,
            response_headers=options.response_headers,
            origin=reader.origin,
        )
        return self._finish(reader, spec, *options.problems)

    def _finish(self, reader: VerbReader, spec: RuleSpec, *more: Problem) -> Rule:
        return Rule(spec=spec, problems=(*self.problems, *reader.problems, *more))


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
    reader = VerbReader(origin=origin, subject="match(...)")
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
        headers=_header_matchers(reader, "headers", headers),
        query=_query_matchers(reader, query),
    )
    return Match(spec=spec, origin=origin, problems=tuple(reader.problems))


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
        reader: VerbReader,
        *,
        timeout: object,
        retries: object,
        fault: object,
        mirror: object,
        request_headers: object,
        response_headers: object,
    ) -> RouteOptions:
        retry_part = reader.part("retries", retries, Retry, "retry")
        fault_part = reader.part("fault", fault, Fault, "fault")
        mirror_part = reader.part("mirror", mirror, Mirror, "mirror")
        request_part = reader.part("request_headers", request_headers, HeaderRules, "headers")
        response_part = reader.part("response_headers", response_headers, HeaderRules, "headers")
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


def read_rules(
    reader: VerbReader, rules: tuple[object, ...]
) -> tuple[list[RuleSpec], list[Problem]]:
    """The ``RuleSpec``s of ``mesh.route``'s positional rules, and their problems."""
    specs: list[RuleSpec] = []
    problems: list[Problem] = []
    for rule in rules:
        if isinstance(rule, Rule):
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


def read_default(reader: VerbReader, default: object) -> tuple[Forward | None, list[Problem]]:
    """``default=``: a version name, a ``split(...)`` or ``None`` (every version)."""
    if default is None:
        return None, []
    if isinstance(default, str):
        return Forward(versions=(WeightedVersion(version=default),)), []
    if isinstance(default, Split):
        return default.spec, list(default.problems)
    reader.fail(f"default must be a version name or split(...), got {describe_value(default)}")
    return None, []


def declare_route(
    *,
    origin: Origin,
    service: str,
    rules: tuple[object, ...],
    default: object,
    timeout: object,
    retries: object,
    fault: object,
    mirror: object,
    request_headers: object,
    response_headers: object,
) -> tuple[RouteSpec, list[Problem]]:
    """The ``RouteSpec`` of one ``mesh.route(...)`` call and every type mistake in it."""
    reader = VerbReader(origin=origin, subject=f"route {service!r}")
    rule_specs, problems = read_rules(reader, rules)
    default_spec, default_problems = read_default(reader, default)
    options = RouteOptions.read(
        reader,
        timeout=DEFAULT_ROUTE_TIMEOUT if timeout is None else timeout,
        retries=retries,
        fault=fault,
        mirror=mirror,
        request_headers=request_headers,
        response_headers=response_headers,
    )
    spec = RouteSpec(
        service=service,
        rules=tuple(rule_specs),
        default=default_spec,
        timeout=DEFAULT_ROUTE_TIMEOUT if options.timeout is None else options.timeout,
        retry=options.retry,
        fault=options.fault,
        mirror=options.mirror,
        request_headers=options.request_headers,
        response_headers=options.response_headers,
        origin=origin,
    )
    return spec, [*reader.problems, *problems, *default_problems, *options.problems]
