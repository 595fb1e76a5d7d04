"""An evaluator child started before it is needed, so that a reload skips its start-up.

``WarmEvaluator(meshfile)`` keeps one evaluator child (``python -m
meshkit.dsl.evaluate.child --when-told MESHFILE``) started ahead: a fresh
interpreter that has imported meshkit's DSL and waits for a line on its stdin
before it reads and evaluates the Meshfile.  Each call tells the waiting child
to go, reads its result as ``evaluate_async`` does, and starts the next child.
Every evaluation still runs in an interpreter of its own, with the Meshfile
and what it imports read when it is told to go; only starting Python and
importing meshkit (most of the 150 ms an evaluation takes) happen beforehand.
A call does not start the next child: that is ``prepare``, which the caller
runs once its reload is done, so that starting it does not slow the reload.

The child is in its own session and exits at the end of its stdin, so it
does not outlive the control plane; ``aclose`` kills it.  Another path than
``meshfile`` is evaluated by ``evaluate_async``.
"""

from __future__ import annotations

import os
import subprocess
from types import TracebackType

import trio

from meshkit.dsl.evaluate.evaluation import (
    DEFAULT_TIMEOUT,
    EvalResult,
    _child_command,
    _child_environment,
    _for_display,
    _kill_process_group,
    _result_from_child,
    _timed_out,
    evaluate_async,
)

GO = b"go\n"


class WarmEvaluator:
    """``await evaluator(path)``: an ``evaluate_async`` whose child is already started."""

    def __init__(self, meshfile: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.meshfile = os.path.abspath(meshfile)
        self.timeout = timeout
        self._waiting: trio.Process | None = None

    async def prepare(self) -> None:
        """Start the child the next evaluation will use, unless one waits already."""
        if self._waiting is None:
            self._waiting = await trio.lowlevel.open_process(
                [*_child_command(self.meshfile)[:-1], "--when-told", self.meshfile],
                cwd=os.path.dirname(self.meshfile),
                env=_child_environment(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )

    async def __call__(self, path: str) -> EvalResult:
        if os.path.abspath(path) != self.meshfile:
            return await evaluate_async(path, timeout=self.timeout)
        await self.prepare()
        process, self._waiting = self._waiting, None
        assert process is not None
        try:
            result = await self._told(process)
        finally:
            await _finish(process)
        return _for_display(result, given=path)

    async def _told(self, process: trio.Process) -> EvalResult:
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        stdout, stderr = bytearray(), bytearray()
        with trio.move_on_after(self.timeout):
            async with trio.open_nursery() as readers:
                readers.start_soon(_read_all, process.stdout, stdout)
                readers.start_soon(_read_all, process.stderr, stderr)
                try:
                    await process.stdin.send_all(GO)
                    await process.stdin.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # it died waiting: its output says why
            returncode = await process.wait()
            return _result_from_child(self.meshfile, returncode, bytes(stdout), bytes(stderr))
        return _timed_out(self.meshfile, self.timeout, bytes(stderr))

    async def aclose(self) -> None:
        process, self._waiting = self._waiting, None
        if process is not None:
            await _finish(process)

    async def __aenter__(self) -> WarmEvaluator:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _read_all(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while chunk := await stream.receive_some(65536):
        into += chunk


async def _finish(process: trio.Process) -> None:
    """Kill the child's group if it still runs, and reap it."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            _kill_process_group(process.pid)
        await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()
