"""Reading the arguments of every Meshfile verb, and what a verb returns.

``ArgumentReader`` turns what a verb was given into typed values; each value of
the wrong type becomes a ``Problem`` at the user's line and a harmless fallback,
so one evaluation reports every mistake.  ``Declared`` is what a verb returns:
the spec it built and the problems it noticed, reported by ``mesh.route`` /
``mesh.policy``, so a verb never raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeAlias, TypeVar

import attrs

from meshkit.dsl.checks.problems import Problem, describe_value
from meshkit.dsl.checks.suggest import did_you_mean
from meshkit.dsl.checks.validate import is_host_name
from meshkit.dsl.durations import DurationError, parse_duration
from meshkit.dsl.spec import Origin

Duration: TypeAlias = int | float | str
"""Seconds as a number, or a string such as ``"250ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``."""
SpecT = TypeVar("SpecT")


@attrs.frozen(kw_only=True)
class Declared(Generic[SpecT]):
    """What a verb returns: ``verb`` (its name), the ``spec`` it built and its ``problems``."""

    verb: str
    spec: SpecT
    problems: tuple[Problem, ...] = ()

    def __repr__(self) -> str:
        return f"{self.verb}(...)"


class ArgumentReader:
    """Reads a verb's arguments, noting each type mistake as a Problem at ``origin``."""

    def __init__(self, *, origin: Origin, subject: str) -> None:
        self.origin = origin
        self.subject = subject
        self.problems: list[Problem] = []

    def fail(self, message: str) -> None:
        prefix = f"{self.subject}: " if self.subject else ""
        self.problems.append(Problem.at(self.origin, prefix + message))

    def declared(self, verb: str, spec: SpecT, *more: Problem) -> Declared[SpecT]:
        """The value a verb returns: ``spec`` and every problem noticed reading it."""
        return Declared(verb=verb, spec=spec, problems=(*self.problems, *more))

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

    def choice(self, field: str, value: object, choices: tuple[str, ...]) -> str | None:
        if isinstance(value, str) and value in choices:
            return value
        allowed = ", ".join(repr(choice) for choice in choices)
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        self.fail(f"{field} {value!r} is not one of {allowed}{hint}")
        return None

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

    def host_names(self, field: str, value: object) -> tuple[str, ...]:
        """DNS names (``shop.test``, lower-cased); no ports, schemes or wildcards."""
        found: list[str] = []
        for name in self.names(field, value):
            if not is_host_name(name):
                self.fail(
                    f"{field}: {name!r} is not a host name (write a DNS name such as "
                    "'shop.test', without a scheme, port or wildcard; loopback is always allowed)"
                )
            else:
                found.append(name.lower().rstrip("."))
        return tuple(dict.fromkeys(found))

    def part(
        self, field: str, value: object, kind: type[SpecT], verb: str
    ) -> Declared[SpecT] | None:
        """``value`` when it is what ``verb(...)`` returns (a ``Declared`` of ``kind``)."""
        if value is None:
            return None
        if isinstance(value, Declared) and isinstance(value.spec, kind):
            return value
        self.fail(f"{field} must be {verb}(...), got {describe_value(value)}")
        return None
