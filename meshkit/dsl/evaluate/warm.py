"""An evaluator child that starts in milliseconds, so that a reload skips Python's start-up.

Given a ``forker`` (the sidecar template, ``meshkit.runtime.template``),
each evaluation of ``meshfile`` is a child forked from the template at the
save: it has imported meshkit's DSL already, so it starts in milliseconds
and holds no memory while nobody evaluates; its stdin, stdout and stderr are
pipes as a spawn's are.

Without a template (or once it refused a fork or is gone, for good),
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

The child is in its own session and exits at the end of its stdin (a forked
one carries an owner tag of the run and its group is guarded), so it does
not outlive the control plane; ``aclose`` kills it.  Another path than
``meshfile`` is evaluated by ``evaluate_async``.
"""

from __future__ import annotations

import os
import subprocess
from types import TracebackType
from typing import Protocol

import trio

from meshkit.api.template import Child
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


class Forker(Protocol):
    async def fork_evaluator(
        self, meshfile: str, *, env: dict[str, str], stdio: tuple[int, int, int]
    ) -> Child | None:
        """``python -m meshkit.dsl.evaluate.child MESHFILE`` forked in the Meshfile's
        directory, in its own session, on ``stdio``; None: spawn it instead."""
        ...


class WarmEvaluator:
    """``await evaluator(path)``: an ``evaluate_async`` whose child is already started."""

    def __init__(
        self, meshfile: str, *, timeout: float = DEFAULT_TIMEOUT, forker: Forker | None = None
    ) -> None:
        self.meshfile = os.path.abspath(meshfile)
        self.timeout = timeout
        self._forker = forker
        self._waiting: trio.Process | None = None

    async def prepare(self) -> None:
        """Start the child the next evaluation will use, unless one waits already
        (nothing to start while the template forks each one)."""
        if self._waiting is None and self._forker is None:
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
        result = await self._forked() if self._forker is not None else None
        if result is None:
            await self.prepare()
            process, self._waiting = self._waiting, None
            assert process is not None
            try:
                assert process.stdin is not None
                assert process.stdout is not None and process.stderr is not None
                streams = (process.stdin, process.stdout, process.stderr)
                result = await self._told(process, *streams)
            finally:
                await _finish(process, process.stdin, process.stdout, process.stderr)
        return _for_display(result, given=path)

    async def _forked(self) -> EvalResult | None:
        """The result of a child forked from the template; None (and no template from
        now on) when it forks none."""
        assert self._forker is not None
        pipes: list[tuple[int, int]] = []
        try:
            while len(pipes) < 3:
                pipes.append(os.pipe())
            (stdin, to_stdin), (from_stdout, stdout), (from_stderr, stderr) = pipes
            process = await self._forker.fork_evaluator(
                self.meshfile, env=_child_environment(), stdio=(stdin, stdout, stderr)
            )
        except BaseException:
            for fd in [fd for pipe in pipes for fd in pipe]:
                os.close(fd)
            raise
        # Its stdin at its end at once, as a spawn's ``stdin=b""``.
        for fd in (stdin, stdout, stderr, to_stdin):
            os.close(fd)
        ours = (trio.lowlevel.FdStream(from_stdout), trio.lowlevel.FdStream(from_stderr))
        if process is None:
            self._forker = None
            await _close_all(*ours)
            return None
        try:
            return await self._told(process, None, *ours)
        finally:
            await _finish(process, *ours)

    async def _told(
        self,
        process: Child,
        stdin: trio.abc.SendStream | None,
        stdout: trio.abc.ReceiveStream,
        stderr: trio.abc.ReceiveStream,
    ) -> EvalResult:
        """Tell a waiting child to go (``stdin``), read its output, wait for it."""
        out, err = bytearray(), bytearray()
        with trio.move_on_after(self.timeout):
            async with trio.open_nursery() as readers:
                readers.start_soon(_read_all, stdout, out)
                readers.start_soon(_read_all, stderr, err)
                if stdin is not None:
                    try:
                        await stdin.send_all(GO)
                        await stdin.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass  # it died waiting: its output says why
            returncode = await process.wait()
            return _result_from_child(self.meshfile, returncode, bytes(out), bytes(err))
        return _timed_out(self.meshfile, self.timeout, bytes(err))

    async def aclose(self) -> None:
        process, self._waiting = self._waiting, None
        if process is not None:
            await _finish(process, process.stdin, process.stdout, process.stderr)

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


async def _finish(process: Child, *streams: trio.abc.AsyncResource | None) -> None:
    """Kill the child's group if it still runs, reap it, close our ends of its pipes."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            _kill_process_group(process.pid)
        await process.wait()
        await _close_all(*streams)


async def _close_all(*streams: trio.abc.AsyncResource | None) -> None:
    with trio.CancelScope(shield=True):
        for stream in streams:
            if stream is not None:
                await stream.aclose()
