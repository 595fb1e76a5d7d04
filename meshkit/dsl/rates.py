"""Rates as people write them: ``"100/s"``, ``"5/m"``, ``"1000/h"``, ``"10/2s"``, ``"3/500ms"``.

A whole number of requests, a slash, and a period: a unit alone (``s``, ``m``,
``h``, ``ms``) means one of it, anything else is a duration
(``meshkit.dsl.durations``).  The result is ``(count, period in seconds)``.
"""

from __future__ import annotations

from meshkit.dsl.durations import DurationError, parse_duration

RATE_HINT = 'write a rate as requests per period: "100/s", "5/m", "1000/h" or "10/2s"'


class RateError(ValueError):
    """``value`` is not a rate; the message says what is accepted."""


def parse_rate(value: object) -> tuple[int, float]:
    """``(count, period)`` of a rate; ``RateError`` naming the mistake otherwise."""
    if not isinstance(value, str):
        raise RateError(f"{value!r} is not a rate ({RATE_HINT})")
    count_text, slash, period_text = value.strip().partition("/")
    if not slash:
        raise RateError(f"{value!r} has no period ({RATE_HINT})")
    count_text, period_text = count_text.strip(), period_text.strip()
    if not count_text.isdigit():
        raise RateError(
            f"{value!r}: {count_text!r} is not a whole number of requests ({RATE_HINT})"
        )
    count = int(count_text)
    if count < 1:
        raise RateError(
            f"{value!r} admits no request at all; a rate needs at least 1 ({RATE_HINT})"
        )
    unit = period_text if period_text in ("ms", "s", "m", "h") else None
    try:
        period = parse_duration("1" + unit if unit else period_text)
    except DurationError:
        raise RateError(f"{value!r}: {period_text!r} is not a period ({RATE_HINT})") from None
    if period <= 0:
        raise RateError(f"{value!r}: the period must be longer than 0 ({RATE_HINT})")
    return count, period
