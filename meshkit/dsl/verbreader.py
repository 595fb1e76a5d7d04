"""Reading the arguments of the Meshfile's traffic and resilience verbs.

``VerbReader`` turns what a verb was given into typed values; each value of the
wrong type becomes a ``Problem`` at the user's line and a harmless fallback, so
one evaluation reports every mistake (as ``declare``'s reader does for services).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias, TypeVar

from meshkit.dsl.durations import DurationError, parse_duration
from meshkit.dsl.problems import Problem, describe_value
from meshkit.dsl.spec import Origin

Duration: TypeAlias = int | float | str
"""Seconds as a number, or a string such as ``"250ms"``, ``"2s"``."""
_T = TypeVar("_T")


class VerbReader:
    """Reads a verb's arguments, noting each type mistake as a Problem at ``origin``."""

    def __init__(self, *, origin: Origin, subject: str) -> None:
        self.origin = origin
        self.subject = subject
        self.problems: list[Problem] = []

    def fail(self, message: str) -> None:
        self.problems.append(Problem.at(self.origin, f"{self.subject}: {message}"))

    def text(self, field: str, value: object, *, fallback: str = "") -> str:
        if isinstance(value, str):
            return value
        self.fail(f"{field} must be a string, got {describe_value(value)}")
        return fallback

    def optional_text(self, field: str, value: object) -> str | None:
        return None if value is None else self.text(field, value)

    def integer(self, field: str, value: object, *, fallback: int) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.fail(f"{field} must be an int, got {describe_value(value)}")
        return fallback

    def number(self, field: str, value: object, *, fallback: float) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.fail(f"{field} must be a number, got {describe_value(value)}")
        return fallback

    def duration(self, field: str, value: object, *, fallback: float) -> float:
        try:
            return parse_duration(value)
        except DurationError as error:
            self.fail(f"{field}: {error}")
            return fallback

    def optional_duration(self, field: str, value: object) -> float | None:
        return None if value is None else self.duration(field, value, fallback=0.0)

    def pairs(self, field: str, value: object) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.fail(f"{field} must be a dict of header -> value, got {describe_value(value)}")
            return ()
        found: list[tuple[str, str]] = []
        for name, item in value.items():
            if isinstance(name, str) and isinstance(item, str):
                found.append((name.lower(), item))
            else:
                self.fail(f"{field} entries must be strings, got {name!r}: {describe_value(item)}")
        return tuple(found)

    def names(self, field: str, value: object) -> tuple[str, ...]:
        items: Iterable[object] = (value,) if isinstance(value, str) else ()
        if not isinstance(value, str):
            if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
                items = value
            else:
                self.fail(f"{field} must be a list of strings, got {describe_value(value)}")
        found: list[str] = []
        for item in items:
            if isinstance(item, str):
                found.append(item)
            else:
                self.fail(f"{field} entries must be strings, got {describe_value(item)}")
        return tuple(found)

    def part(self, field: str, value: object, kind: type[_T], verb: str) -> _T | None:
        if value is None or isinstance(value, kind):
            return value
        self.fail(f"{field} must be {verb}(...), got {describe_value(value)}")
        return None
