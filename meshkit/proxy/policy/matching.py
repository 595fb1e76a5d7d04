"""Which rule of a route table a request matches: the first one whose conditions all hold.

``RouteMatcher(table)`` compiles the table's regular expressions once (a bad
one raises ``ValueError`` naming it, so a sidecar can refuse the config);
``first_match(head)`` then answers per request without I/O.

Conditions, as Envoy and Istio apply them:

* path (the target before ``?``, not decoded): exact, prefix, or a regex that
  must match the whole path;
* method: one of the listed methods;
* headers: a header sent several times is matched as its values joined with
  ``,``; ``present``/``absent`` test only the name;
* query: ``exact`` and ``regex`` hold when any value of the parameter matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl

from meshkit.api import HeaderMatch, QueryMatch, RequestMatch, RouteRule, RouteTable
from meshkit.api.regex import Pattern, compile_pattern
from meshkit.proxy.codec.messages import Headers, RequestHead


def pattern_if_regex(kind: str, value: str, what: str) -> Pattern | None:
    """``value`` compiled when the condition's ``kind`` is ``regex``, else None."""
    return compile_pattern(value, what=what) if kind == "regex" else None


def joined_header(headers: Headers, name: bytes) -> str | None:
    """Every value of header ``name`` joined with ``,`` (Envoy's rule), or None if absent."""
    values = [value for key, value in headers if key == name]
    if not values:
        return None
    return ",".join(value.decode("latin-1") for value in values)


class HeaderCondition:
    """One compiled header condition."""

    def __init__(self, match: HeaderMatch) -> None:
        self.name = match.name.lower().encode("latin-1")
        self.kind = match.kind
        self.value = match.value
        self.pattern = pattern_if_regex(match.kind, match.value, f"header {match.name!r} regex")

    def holds(self, headers: Headers) -> bool:
        value = joined_header(headers, self.name)
        if self.kind == "absent":
            return value is None
        if value is None:
            return False
        if self.kind == "present":
            return True
        if self.kind == "prefix":
            return value.startswith(self.value)
        if self.pattern is not None:
            return self.pattern.fullmatch(value) is not None
        return value == self.value


def headers_hold(conditions: Sequence[HeaderCondition], headers: Headers) -> bool:
    return all(condition.holds(headers) for condition in conditions)


class _QueryCondition:
    def __init__(self, match: QueryMatch) -> None:
        self.name = match.name
        self.kind = match.kind
        self.value = match.value
        self.pattern = pattern_if_regex(match.kind, match.value, f"query {match.name!r} regex")

    def holds(self, query: list[tuple[str, str]]) -> bool:
        values = [value for key, value in query if key == self.name]
        if self.kind == "present":
            return bool(values)
        if self.pattern is not None:
            return any(self.pattern.fullmatch(value) is not None for value in values)
        return self.value in values


def split_target(target: bytes) -> tuple[str, str]:
    """The path and the query string (without ``?``) of a request target."""
    text = target.decode("latin-1")
    path, _, query = text.partition("?")
    return path, query


class _CompiledMatch:
    def __init__(self, match: RequestMatch) -> None:
        self.path_kind = match.path_kind
        self.path = match.path
        self.path_pattern = pattern_if_regex(match.path_kind, match.path, "path_regex")
        self.methods = frozenset(method.upper().encode("ascii") for method in match.methods)
        self.headers = [HeaderCondition(header) for header in match.headers]
        self.query = [_QueryCondition(query) for query in match.query]

    def holds(self, head: RequestHead, path: str, query_text: str) -> bool:
        if self.methods and head.method.upper() not in self.methods:
            return False
        if self.path_kind == "exact" and path != self.path:
            return False
        if self.path_kind == "prefix" and not path.startswith(self.path):
            return False
        if self.path_pattern is not None and self.path_pattern.fullmatch(path) is None:
            return False
        if not headers_hold(self.headers, head.headers):
            return False
        if self.query:
            query = parse_qsl(query_text, keep_blank_values=True)
            return all(condition.holds(query) for condition in self.query)
        return True


class RouteMatcher:
    """A route table with its patterns compiled, ready to match requests."""

    def __init__(self, table: RouteTable) -> None:
        self.table = table
        self._compiled = [(_CompiledMatch(rule.match), rule) for rule in table.rules]

    def first_match(self, head: RequestHead) -> RouteRule | None:
        """The first rule whose conditions all hold, or None (answer ``NR``)."""
        path, query = split_target(head.target)
        for compiled, rule in self._compiled:
            if compiled.holds(head, path, query):
                return rule
        return None


def compile_tables(tables: Sequence[RouteTable]) -> dict[str, RouteMatcher]:
    """A matcher per destination service; ``ValueError`` for the first bad pattern."""
    return {table.service: RouteMatcher(table) for table in tables}
