"""Child processes in process groups the control plane owns.

Every child starts in its own session (so its own process group, whose id is
its pid), with stdout and stderr on one pipe read line by line by a log task.
Stopping a child means SIGTERM to its whole group, then SIGKILL to the group
after a grace period (or at once when someone is in a hurry).  Each group is
registered with the guardian (``meshkit.runtime.guardian``) for as long as it
may exist, so that no child outlives a control plane that was killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

LineSink = Callable[[str], None]


class GroupGuard(Protocol):
    async def register(self, pgid: int) -> None: ...

    async def unregister(self, pgid: int) -> None: ...


class NoGuard:
    """A guard that guards nothing (tests of the supervisor alone)."""

    async def register(self, pgid: int) -> None:
        return None

    async def unregister(self, pgid: int) -> None:
        return None


class GuardianLink:
    """The pipe to a running guardian process.  Start with ``GuardianLink.start``."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        assert process.stdin is not None
        self._pipe = process.stdin
        self._lock = trio.Lock()

    @classmethod
    async def start(cls) -> GuardianLink:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "meshkit.runtime.guardian"],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        return cls(process)

    async def register(self, pgid: int) -> None:
        await self._send(f"+{pgid}\n")

    async def unregister(self, pgid: int) -> None:
        await self._send(f"-{pgid}\n")

    async def _send(self, line: str) -> None:
        async with self._lock:
            try:
                await self._pipe.send_all(line.encode())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                sys.stderr.write("meshkit: the orphan guardian is gone; children are unguarded\n")

    async def close(self) -> None:
        """Close the pipe: the guardian kills what is still registered, then exits."""
        with trio.CancelScope(shield=True):
            await self._pipe.aclose()
            with trio.move_on_after(5):
                await self.process.wait()


@attrs.frozen(kw_only=True)
class ProcessSpec:
    """What to start: ``argv`` run directly (use ``shell_argv`` for a shell command)."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = attrs.field(factory=dict)
    cwd: str | None = None
    # Descriptors the child inherits (e.g. the sidecar's bootstrap-token pipe).
    pass_fds: tuple[int, ...] = ()


def shell_argv(command: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", command)


def signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send ``signum`` to a process group; False if the group is already gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


class ManagedProcess:
    """A running child and its process group."""

    def __init__(self, *, spec: ProcessSpec, process: trio.Process, guard: GroupGuard) -> None:
        self.spec = spec
        self.process = process
        self.guard = guard
        self.pid = process.pid
        self.pgid = process.pid
        self._exited = trio.Event()
        self._reaped = False

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> int:
        """Wait until the leader exits, then clear the rest of its group away."""
        code = await self.process.wait()
        if not self._reaped:
            self._reaped = True
            signal_group(self.pgid, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await self.guard.unregister(self.pgid)
            self._exited.set()
        return code

    async def stop(self, *, grace: float, hurry: trio.Event | None = None) -> int:
        """SIGTERM the group; SIGKILL it after ``grace`` seconds or once ``hurry`` is set.

        Shielded from cancellation: a stop always finishes.
        """
        code = 0
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                signal_group(self.pgid, signal.SIGTERM)
                async with trio.open_nursery() as nursery:

                    async def escalate() -> None:
                        with trio.move_on_after(grace):
                            if hurry is not None:
                                await hurry.wait()
                            else:
                                await trio.sleep_forever()
                        signal_group(self.pgid, signal.SIGKILL)

                    nursery.start_soon(escalate)
                    await self.process.wait()
                    nursery.cancel_scope.cancel()
            code = await self.wait()
        return code


async def spawn(
    spec: ProcessSpec,
    *,
    guard: GroupGuard,
    on_line: LineSink,
    nursery: trio.Nursery,
) -> ManagedProcess:
    """Start ``spec`` in a new session; its output lines go to ``on_line``.

    The line reader runs in ``nursery`` and ends when the last holder of the
    output pipe (usually the child) exits.
    """
    try:
        process = await trio.lowlevel.open_process(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=spec.env,
            cwd=spec.cwd,
            start_new_session=True,
            pass_fds=spec.pass_fds,
        )
    except OSError as exc:
        raise ProcessStartError(f"could not start {spec.name} ({spec.argv[0]}): {exc}") from exc
    managed = ManagedProcess(spec=spec, process=process, guard=guard)
    with trio.CancelScope(shield=True):
        await guard.register(managed.pgid)
    assert process.stdout is not None
    nursery.start_soon(_pump_lines, process.stdout, on_line)
    return managed


class ProcessStartError(Exception):
    """A child could not be started at all (missing cwd, bad executable...)."""


async def _pump_lines(stream: trio.abc.ReceiveStream, on_line: LineSink) -> None:
    buffer = b""
    async with stream:
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                on_line(line.rstrip(b"\r").decode("utf-8", errors="replace"))
            if len(buffer) > 64 * 1024:
                on_line(buffer.decode("utf-8", errors="replace"))
                buffer = b""
    if buffer:
        on_line(buffer.decode("utf-8", errors="replace"))
