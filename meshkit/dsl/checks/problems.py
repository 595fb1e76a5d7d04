"""What is wrong with a Meshfile, said where it is wrong.

A ``Problem`` is one finding: a file, a line and a message for a person.  Its
string form is the compiler-style ``FILE:LINE: message`` that editors and
terminals turn into a link.  Problems are collected, never raised, so a user
sees every mistake of a Meshfile at once.
"""

from __future__ import annotations

import attrs

from meshkit.dsl.spec import Origin


@attrs.frozen(kw_only=True)
class Problem:
    """One finding about a Meshfile: ``file`` and ``line`` say where, ``message`` what."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    @classmethod
    def at(cls, origin: Origin, message: str) -> Problem:
        """A problem at the place ``origin`` points to."""
        return cls(file=origin.file, line=origin.line, message=message)


class MeshfileError(ValueError):
    """A Meshfile mistake found outside an evaluation, where it cannot be collected.

    During ``evaluate``/``evaluate_in_process`` mistakes become ``Problem``s
    instead; this is raised only when the DSL is used directly, e.g. from a REPL.
    """

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def describe_value(value: object) -> str:
    """``'2' (a str)``: a value and its type, for messages about type mistakes."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} (a {type(value).__name__})"
