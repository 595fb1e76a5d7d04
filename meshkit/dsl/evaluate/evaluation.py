"""Evaluating a Meshfile: run the user's Python, collect its declarations, validate them.

``evaluate(path)`` does it in a fresh interpreter (``python -m
meshkit.dsl.evaluate.child``) so that every evaluation sees the current source of the
modules a Meshfile imports, and so that a Meshfile that hangs or crashes costs a
child process, not the control plane.  ``evaluate_in_process(path)`` is what
that child runs, and what unit tests call.

Nothing here raises for a bad Meshfile: a Python exception in it, a type
mistake, an invalid mesh, a timeout or a crashed child are all ``Problem``s of
the ``EvalResult``.  Problems name the Meshfile as the caller spelled its path
(``Meshfile.py:14: ...``); other files of the user are named relative to the
current directory when they are under it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import traceback
import types
from pathlib import Path
from typing import Any

import attrs

from meshkit.api.converter import converter
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.checks.validate import build_spec, validate
from meshkit.dsl.evaluate.userframes import is_user_file, user_frames
from meshkit.dsl.evaluate.userimports import fresh_user_imports, user_module_files
from meshkit.dsl.spec import MeshSpec
from meshkit.dsl.verbs.collect import collecting

MESHFILE_NAMES = ("Meshfile.py", "meshfile.py")
DEFAULT_TIMEOUT = 30.0
_MESHFILE_MODULE = "__meshfile__"
_MESHKIT_PARENT = str(Path(__file__).resolve().parent.parent.parent)


@attrs.frozen(kw_only=True)
class EvalResult:
    """The outcome of evaluating a Meshfile.

    ``spec`` is the validated ``MeshSpec``, or None when there are problems.
    ``files`` are the absolute paths of the Meshfile and of the modules beside
    it that it imported (what a watcher should watch).  ``output`` is what the
    Meshfile printed, when it ran in a child process.
    """

    spec: MeshSpec | None
    problems: tuple[Problem, ...] = ()
    files: tuple[str, ...] = ()
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.problems


class MeshfileNotFound(FileNotFoundError):
    """No Meshfile where one was looked for; the message says where that was."""


def find_meshfile(explicit: str | None, *, directory: str | os.PathLike[str] | None = None) -> Path:
    """The Meshfile to use: ``explicit`` if given, else ``Meshfile.py`` or ``meshfile.py``.

    Names are looked up in ``directory`` (default: the current directory), and so
    is ``explicit`` when it is a directory.  The path is returned as the user
    would write it (relative stays relative), for messages.
    """
    base = Path(directory) if directory is not None else Path()
    if explicit is not None:
        chosen = base / explicit
        if chosen.is_file():
            return chosen
        if not chosen.is_dir():
            raise MeshfileNotFound(f"Meshfile {str(chosen)!r} does not exist")
        base = chosen
    for name in MESHFILE_NAMES:
        candidate = base / name
        if candidate.is_file():
            return candidate
    where = os.path.abspath(base)
    raise MeshfileNotFound(
        f"no Meshfile found (looked for {' and '.join(MESHFILE_NAMES)} in {where}); pass -f FILE"
    )


def problem_from_exception(error: BaseException, *, meshfile: str) -> Problem:
    """The exception as a Problem at the deepest line of the user's own code.

    The message is ``<ExcType>: <message>`` followed by the traceback trimmed to
    the user's frames (and, for a SyntaxError, the offending line and caret).
    """
    summary = traceback.TracebackException.from_exception(error)
    frames = user_frames(summary.stack)
    file, line = meshfile, 1
    if frames:
        file, line = os.path.abspath(frames[-1].filename), frames[-1].lineno or 1
    detail: list[str] = []
    text = str(error)
    if isinstance(error, SyntaxError):
        text = error.msg
        if error.filename and is_user_file(error.filename):
            file, line = os.path.abspath(error.filename), error.lineno or 1
        detail = list(summary.format_exception_only())[:-1]
    name = type(error).__qualname__
    lines = [f"{name}: {text}" if text else name]
    if frames:
        lines.append("Traceback (most recent call last, your code only):")
        lines.extend(traceback.StackSummary.from_list(frames).format())
    lines.extend(detail)
    message = "\n".join(part.rstrip("\n") for part in lines)
    return Problem(file=file, line=line, message=message)


def evaluate_absolute(meshfile: str) -> EvalResult:
    """Evaluate the Meshfile at the absolute path ``meshfile``; problems name absolute files."""
    meshfile = os.path.abspath(meshfile)
    try:
        source = Path(meshfile).read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        return EvalResult(
            spec=None,
            problems=(
                Problem(file=meshfile, line=1, message=f"cannot read the Meshfile: {reason}"),
            ),
        )
    module = types.ModuleType(_MESHFILE_MODULE)
    module.__file__ = meshfile
    crash: Problem | None = None
    directory = os.path.dirname(meshfile)
    with (
        fresh_user_imports(directory) as modules_before,
        collecting(meshfile) as collector,
        contextlib.redirect_stdout(sys.stderr),
    ):
        previous_module = sys.modules.get(_MESHFILE_MODULE)
        sys.modules[_MESHFILE_MODULE] = module
        try:
            code = compile(source, meshfile, "exec", dont_inherit=True)
            exec(code, module.__dict__)
        except (Exception, SystemExit) as error:
            crash = problem_from_exception(error, meshfile=meshfile)
        finally:
            if previous_module is None:
                sys.modules.pop(_MESHFILE_MODULE, None)
            else:
                sys.modules[_MESHFILE_MODULE] = previous_module
        files = (meshfile, *user_module_files(directory, since=modules_before))
    declarations = collector.declarations()
    if crash is not None:
        problems = sorted((crash, *declarations.problems), key=lambda p: (p.file, p.line))
        return EvalResult(spec=None, problems=tuple(problems), files=files)
    found = validate(declarations)
    if found:
        return EvalResult(spec=None, problems=tuple(found), files=files)
    return EvalResult(spec=build_spec(declarations), files=files)


def _display_file(file: str, *, meshfile: str, given: str) -> str:
    if file == meshfile:
        return given
    cwd = os.getcwd()
    if file.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(file, cwd)
    return file


def _for_display(result: EvalResult, *, given: str | os.PathLike[str]) -> EvalResult:
    meshfile = os.path.abspath(given)
    problems = tuple(
        attrs.evolve(p, file=_display_file(p.file, meshfile=meshfile, given=os.fspath(given)))
        for p in result.problems
    )
    return attrs.evolve(result, problems=problems)


def evaluate_in_process(path: str | os.PathLike[str]) -> EvalResult:
    """Evaluate the Meshfile at ``path`` in this interpreter.

    Modules beside the Meshfile are imported from source and forgotten again
    afterwards, but anything else the Meshfile does to this process stays done:
    prefer ``evaluate`` outside of tests.
    """
    return _for_display(evaluate_absolute(os.path.abspath(path)), given=path)


def result_to_dict(result: EvalResult) -> dict[str, Any]:
    """The JSON document the evaluator child prints."""
    return {
        "spec": None if result.spec is None else converter.unstructure(result.spec),
        "problems": [converter.unstructure(problem) for problem in result.problems],
        "files": list(result.files),
    }


def prepare_result_hooks() -> None:
    """Generate the converter's functions for ``result_to_dict`` now (~15 ms at first use)."""
    converter.get_unstructure_hook(MeshSpec)
    converter.get_unstructure_hook(Problem)


def result_from_dict(data: Any, *, output: str = "") -> EvalResult:
    """The inverse of ``result_to_dict``; raises cattrs/KeyError/TypeError on a bad shape."""
    spec = None if data["spec"] is None else converter.structure(data["spec"], MeshSpec)
    problems = tuple(converter.structure(item, Problem) for item in data["problems"])
    files = tuple(str(item) for item in data.get("files", ()))
    return EvalResult(spec=spec, problems=problems, files=files, output=output)


def _child_command(meshfile: str) -> list[str]:
    return [sys.executable, "-m", "meshkit.dsl.evaluate.child", meshfile]


def _child_environment() -> dict[str, str]:
    """This environment, with meshkit importable after the Meshfile's directory."""
    env = dict(os.environ)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(part for part in (existing, _MESHKIT_PARENT) if part)
    return env


def _file_problem(meshfile: str, message: str) -> EvalResult:
    return EvalResult(spec=None, problems=(Problem(file=meshfile, line=1, message=message),))


def _result_from_child(meshfile: str, returncode: int, stdout: bytes, stderr: bytes) -> EvalResult:
    output = stderr.decode("utf-8", errors="replace")
    try:
        return result_from_dict(json.loads(stdout), output=output)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        tail = "\n".join(output.strip().splitlines()[-15:])
        how = f"exited with code {returncode}" if returncode else f"printed no result ({error})"
        crashed = _file_problem(
            meshfile, f"evaluating the Meshfile failed: the evaluator process {how}\n{tail}".strip()
        )
        return attrs.evolve(crashed, output=output)


def _timed_out(meshfile: str, timeout: float, output: bytes) -> EvalResult:
    result = _file_problem(
        meshfile,
        f"evaluating the Meshfile took longer than {timeout:g}s and was stopped "
        f"(does it wait for input, a server or a lock, or loop forever?)",
    )
    return attrs.evolve(result, output=output.decode("utf-8", errors="replace"))


def _kill_process_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def evaluate(path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> EvalResult:
    """Evaluate the Meshfile at ``path`` in a fresh interpreter, waiting up to ``timeout`` s.

    Blocks the calling thread; from trio use ``evaluate_async``.
    """
    meshfile = os.path.abspath(path)
    process = subprocess.Popen(
        _child_command(meshfile),
        cwd=os.path.dirname(meshfile),
        env=_child_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    with process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_process_group(process.pid)
            _, stderr = process.communicate()
            return _for_display(_timed_out(meshfile, timeout, stderr), given=path)
        except BaseException:
            _kill_process_group(process.pid)
            raise
        finally:
            _kill_process_group(process.pid)
    result = _result_from_child(meshfile, process.returncode, stdout, stderr)
    return _for_display(result, given=path)


async def evaluate_async(
    path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT
) -> EvalResult:
    """``evaluate`` for trio callers: the child runs while other tasks carry on."""
    # Imported here so that the evaluator child, which imports this module, does
    # not pay for importing trio.
    import trio

    meshfile = os.path.abspath(path)

    async def kill_group(process: trio.Process) -> None:
        _kill_process_group(process.pid)

    completed: subprocess.CompletedProcess[bytes] | None = None
    with trio.move_on_after(timeout):
        completed = await trio.run_process(
            _child_command(meshfile),
            cwd=os.path.dirname(meshfile),
            env=_child_environment(),
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            start_new_session=True,
            deliver_cancel=kill_group,
        )
    if completed is None:
        return _for_display(_timed_out(meshfile, timeout, b""), given=path)
    result = _result_from_child(meshfile, completed.returncode, completed.stdout, completed.stderr)
    return _for_display(result, given=path)
