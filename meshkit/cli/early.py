"""What ``meshkit up`` starts before its own imports: the sidecar template, the evaluation.

``meshkit.cli.main`` calls ``start_for(argv)`` before it imports any
subcommand (importing the control plane takes most of a second).  When the
command line starts with ``up`` (and asks for no help), the template
(``meshkit.runtime.template_start``) starts at once, and so does the
evaluator child of the Meshfile the command line names (``-f FILE``, else
``Meshfile.py`` or ``meshfile.py`` here), so that their imports overlap the
control plane's; ``meshkit up`` takes them with ``take()`` and
``take_evaluation(path)``.  With anything before ``up`` (``-C DIR``: they
would start in the wrong directory) nothing starts here, and ``meshkit up``
starts both itself.  This module imports only the standard library and the
template's starter, so that it costs nothing to import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from meshkit.runtime.lineage import Owners
from meshkit.runtime.template_start import StartedTemplate, start_template

_started: list[StartedTemplate] = []
_evaluations: list[subprocess.Popen[bytes]] = []
HELP = frozenset(("-h", "--help"))
MESHFILE_NAMES = ("Meshfile.py", "meshfile.py")  # as meshkit.dsl.evaluate.evaluation
# The directory that holds the meshkit package: the evaluator child imports it from there.
_MESHKIT_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_for(argv: Sequence[str]) -> None:
    """Start the template and the evaluation now if ``argv`` is a ``meshkit up`` that will run."""
    if list(argv[:1]) == ["up"] and HELP.isdisjoint(argv) and not _started:
        started = start_template(Owners())
        if started is not None:
            _started.append(started)
        meshfile = meshfile_named(argv[1:])
        if meshfile is not None and not _evaluations:
            _evaluations.append(_start_evaluation(meshfile))


def meshfile_named(arguments: Sequence[str]) -> str | None:
    """The absolute path of the Meshfile ``up ARGUMENTS`` will evaluate, if plain to see."""
    explicit: str | None = None
    for index, argument in enumerate(arguments):
        if argument in ("-f", "--file") and index + 1 < len(arguments):
            explicit = arguments[index + 1]
        elif argument.startswith("--file="):
            explicit = argument.partition("=")[2]
    base = os.getcwd()
    if explicit is not None:
        chosen = os.path.join(base, explicit)
        if os.path.isfile(chosen):
            return os.path.abspath(chosen)
        base = chosen
    for name in MESHFILE_NAMES:
        candidate = os.path.join(base, name)
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


def _start_evaluation(meshfile: str) -> subprocess.Popen[bytes]:
    """``python -m meshkit.dsl.evaluate.child MESHFILE``, as ``evaluate`` starts it."""
    env = dict(os.environ)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(part for part in (existing, _MESHKIT_PARENT) if part)
    return subprocess.Popen(
        [sys.executable, "-m", "meshkit.dsl.evaluate.child", meshfile],
        cwd=os.path.dirname(meshfile),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def take() -> StartedTemplate | None:
    """The template ``start_for`` started (once), or None."""
    return _started.pop() if _started else None


def take_evaluation(meshfile: str) -> subprocess.Popen[bytes] | None:
    """The evaluator child ``start_for`` started, if it evaluates ``meshfile`` (else it ends)."""
    if not _evaluations:
        return None
    process = _evaluations.pop()
    if process.args[-1] == os.path.abspath(meshfile):  # type: ignore[index]
        return process
    _end(process)
    return None


def abandon() -> None:
    """Let go of what nobody took (the command line was wrong): it exits."""
    while _started:
        _started.pop().abandon()
    while _evaluations:
        _end(_evaluations.pop())


def _end(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with process:
        process.communicate()
