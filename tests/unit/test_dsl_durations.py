"""Durations as a Meshfile writes them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.dsl.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (2, 2.0),
        (0.5, 0.5),
        (0, 0.0),
        ("3", 3.0),
        ("250ms", 0.25),
        ("2s", 2.0),
        ("1.5m", 90.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m 30s", 90.0),
        ("2 s", 2.0),
        (".5s", 0.5),
    ],
)
def test_accepted_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["2 parsecs", "", "s", "1x", "1 5s", "1m30", "-", True, None, [1], float("inf")]
)
def test_refused_durations_say_what_is_accepted(value: object) -> None:
    with pytest.raises(DurationError, match=r'"250ms", "2s", "1.5m", "1h"'):
        parse_duration(value)


def test_negative_numbers_are_left_to_the_validator() -> None:
    assert parse_duration(-1) == -1.0


@given(st.integers(min_value=0, max_value=10**7))
def test_milliseconds_parse_exactly(milliseconds: int) -> None:
    assert parse_duration(f"{milliseconds}ms") == pytest.approx(milliseconds / 1000)


@given(st.integers(min_value=0, max_value=10**6))
def test_formatted_durations_parse_back(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-5)


@given(st.text(max_size=12))
def test_any_text_either_parses_or_is_a_duration_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except DurationError:
        return
    assert seconds >= 0
