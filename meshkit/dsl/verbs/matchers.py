"""The header and query conditions of ``match(...)`` and ``fault(...)``:
an exact string, ``prefix()``, ``regex()``, ``present()`` or ``absent()``.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from meshkit.api import HeaderMatch, QueryMatch
from meshkit.dsl.checks.problems import describe_value
from meshkit.dsl.verbs.reader import ArgumentReader


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


def header_matchers(reader: ArgumentReader, field: str, value: object) -> tuple[HeaderMatch, ...]:
    found: list[HeaderMatch] = []
    for name, kind, text in _conditions(reader, field, value, _HEADER_KINDS):
        found.append(HeaderMatch(name=name.lower(), kind=kind, value=text))  # type: ignore[arg-type]
    return tuple(found)


def query_matchers(reader: ArgumentReader, value: object) -> tuple[QueryMatch, ...]:
    found: list[QueryMatch] = []
    for name, kind, text in _conditions(reader, "query", value, _QUERY_KINDS):
        found.append(QueryMatch(name=name, kind=kind, value=text))  # type: ignore[arg-type]
    return tuple(found)


def _conditions(
    reader: ArgumentReader, field: str, value: object, kinds: tuple[str, ...]
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
