"""Durations as a Meshfile writes them: ``2``, ``0.5``, ``"250ms"``, ``"1.5m"``, ``"1h30m"``.

A number is a count of seconds.  A string is one or more ``<number><unit>``
parts with the units ``ms``, ``s``, ``m`` and ``h`` (as Go's
``time.ParseDuration`` and Kubernetes write them); a bare numeric string is
seconds.  The result is always seconds as a float.
"""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"[ \t]*({_NUMBER})[ \t]*(ms|s|m|h)[ \t]*")
_WHOLE = re.compile(rf"(?:[ \t]*{_NUMBER}[ \t]*(?:ms|s|m|h)[ \t]*)+")
_BARE_NUMBER = re.compile(rf"[ \t]*{_NUMBER}[ \t]*")

DURATION_HINT = 'use a number of seconds or a string like "250ms", "2s", "1.5m", "1h"'


class DurationError(ValueError):
    """``value`` is not a duration; the message says what is accepted."""


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ``DurationError`` for anything else.

    Negative numbers are returned as they are: whether a duration may be zero
    or negative is for the caller (and the validator) to decide.
    """
    if isinstance(value, bool):
        raise DurationError(f"{value!r} is not a duration ({DURATION_HINT})")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise DurationError(f"{value!r} is not a finite duration ({DURATION_HINT})")
        return seconds
    if not isinstance(value, str):
        raise DurationError(
            f"{value!r} (a {type(value).__name__}) is not a duration ({DURATION_HINT})"
        )
    if value.strip().startswith("-") and value.strip() != "-":
        return -parse_duration(value.strip()[1:])
    if _BARE_NUMBER.fullmatch(value):
        return float(value)
    if not _WHOLE.fullmatch(value):
        raise DurationError(f"{value!r} is not a duration ({DURATION_HINT})")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(value))


def format_duration(seconds: float) -> str:
    """A short human form of ``seconds``: ``250ms``, ``2s``, ``1.5m``, ``2h``."""
    if seconds != 0 and abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    if abs(seconds) < 60:
        return f"{seconds:g}s"
    if abs(seconds) < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"
