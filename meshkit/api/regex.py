"""Route regular expressions, run in linear time on what callers send (RE2).

Header, query and path patterns of the Meshfile are matched against
attacker-controlled input in every sidecar, so they are compiled with RE2
(``google-re2``), whose matching time is linear in the input: a pattern such
as ``(a+)+$`` cannot stall a sidecar the way Python's backtracking ``re``
can.  RE2 refuses what needs backtracking (backreferences, lookaround);
``compile_pattern`` says so with RE2's reason, and ``meshkit check`` reports it
at the pattern's Meshfile line.  Patterns match whole values (``fullmatch``).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import re2


class Pattern(Protocol):
    def fullmatch(self, text: str) -> Any: ...


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the reason is raised, not printed to stderr
    return options


_OPTIONS = _options()


def compile_pattern(pattern: str, *, what: str) -> Pattern:
    """``pattern`` compiled by RE2, or ``ValueError`` naming ``what`` and why it is refused."""
    try:
        compiled: Pattern = re2.compile(pattern, _OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(
            f"{what} {pattern!r} is not a valid regular expression (RE2: {reason}){_hint(pattern)}"
        ) from None
    return compiled


def _hint(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error:
        return ""
    return (
        "; Python's re would accept it, but route patterns run on RE2, in linear time: "
        "no backreferences or lookaround"
    )
