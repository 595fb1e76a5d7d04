"""What ``meshkit up`` starts before its own imports: the sidecar template.

``meshkit.cli.main`` calls ``start_for(argv)`` before it imports any
subcommand (importing the control plane takes most of a second).  When the
command line starts with ``up`` (and asks for no help), the template
(``meshkit.runtime.template_start``) starts at once, so that its imports
overlap the control plane's; ``meshkit up`` takes it with ``take()``.  With
anything before ``up`` (``-C DIR``: the template would start in the wrong
directory) nothing starts here, and ``meshkit up`` starts the template itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshkit.runtime.lineage import Owners
from meshkit.runtime.template_start import StartedTemplate, start_template

_started: list[StartedTemplate] = []
HELP = frozenset(("-h", "--help"))


def start_for(argv: Sequence[str]) -> None:
    """Start the template now if ``argv`` is a ``meshkit up`` that will run a mesh."""
    if list(argv[:1]) == ["up"] and HELP.isdisjoint(argv) and not _started:
        started = start_template(Owners())
        if started is not None:
            _started.append(started)


def take() -> StartedTemplate | None:
    """The template ``start_for`` started (once), or None."""
    return _started.pop() if _started else None


def abandon() -> None:
    """Let go of a template nobody took (the command line was wrong): it exits."""
    while _started:
        _started.pop().abandon()
