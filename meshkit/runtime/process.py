"""Child processes in process groups the control plane owns.

Every child starts in its own session (so its own process group, whose id is
its pid) with an owner tag in its environment (``meshkit.runtime.lineage``),
and with stdout and stderr either on its log file directly (``log_path``: no
pipe, so nothing it writes ever waits for the control plane) or on one pipe
read line by line by a log task (``on_line``).

Stopping a child means SIGTERM to every member of the spawn (its group, and
its descendants that left the group), then waiting until all of them are gone
or the grace period is over (the grace belongs to the app, not to the
``/bin/sh -c`` in front of it, which dies at once), then SIGKILL to whatever is
left; ``hurry`` cuts the grace short.  Each group is registered with the
guardian (``meshkit.runtime.guardian``) for as long as it may exist, so that
no child outlives a control plane that was killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import attrs
import trio

from meshkit.api.template import Child, padded_owner
from meshkit.runtime import lineage
from meshkit.runtime.lineage import Owners

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
    async def start(cls, owners: Owners) -> GuardianLink:
        """A guardian for the groups registered and for every process tagged by ``owners``."""
        # A script without site (-S) or its own directory on the path (-P): half the memory;
        # meshkit's root on the path for the modules it imports once the control plane is gone.
        script = Path(__file__).resolve().with_name("guardian.py")
        root = str(script.parents[2])
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        process = await trio.lowlevel.open_process(
            [sys.executable, "-S", "-P", str(script), "--owners", owners.prefix],
            stdin=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": path},
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


SHARED_OWNERS = Owners()
POLL_INTERVAL = 0.05


@attrs.frozen(kw_only=True)
class ProcessSpec:
    """What to start: ``argv`` run directly (use ``shell_argv`` for a shell command)."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = attrs.field(factory=dict)
    cwd: str | None = None
    # Descriptors the child inherits (e.g. the sidecar's bootstrap-token pipe).
    pass_fds: tuple[int, ...] = ()
    # Stdout and stderr go straight to this file (appended) instead of a pipe.
    log_path: Path | None = None


def shell_argv(command: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", command)


def signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send ``signum`` to a process group; False if the group is already gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


class Forker(Protocol):
    """Starts some spawns faster than ``open_process`` (the sidecar template)."""

    async def fork(
        self, spec: ProcessSpec, *, env: dict[str, str], output: int, tag: str
    ) -> Child | None:
        """The child forked, or None: spawn it the ordinary way."""
        ...


class ManagedProcess:
    """A running child, its process group and its descendants (see the module docstring)."""

    def __init__(self, *, spec: ProcessSpec, process: Child, guard: GroupGuard, tag: str) -> None:
        self.spec = spec
        self.process = process
        self.guard = guard
        self.tag = tag
        self.pid = process.pid
        self.pgid = process.pid
        self._seen: set[int] = set()
        self._reaped = False

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def members(self) -> dict[int, lineage.ProcessState]:
        """The live processes of this spawn other than its leader (zombies reaped on the way)."""
        found = lineage.spawn_members(self.pid, self.tag)
        found.pop(self.pid, None)
        self._seen.update(found)
        lineage.reap(pid for pid, state in found.items() if state.zombie)
        return {pid: state for pid, state in found.items() if not state.zombie}

    def _signal_all(self, signum: signal.Signals) -> None:
        """The group in one go, then each member that left it (once each)."""
        signal_group(self.pgid, signum)
        strays = [pid for pid, state in self.members().items() if state.pgid != self.pgid]
        lineage.signal_all(strays, signum)

    async def wait(self) -> int:
        """Wait until the leader exits, then clear the rest of its spawn away."""
        code = await self.process.wait()
        if not self._reaped:
            self._reaped = True
            with trio.CancelScope(shield=True):
                await self._kill_the_rest()
                await self.guard.unregister(self.pgid)
        return code

    async def _kill_the_rest(self) -> None:
        """SIGKILL what is left of the spawn and wait (briefly) until it is all gone."""
        self._signal_all(signal.SIGKILL)
        lineage.signal_all(lineage.tagged(self.tag), signal.SIGKILL)  # without a subreaper
        with trio.move_on_after(2):
            while self.members():
                await trio.sleep(POLL_INTERVAL)
        lineage.reap(self._seen)

    async def stop(self, *, grace: float, hurry: trio.Event | None = None) -> int:
        """SIGTERM the spawn; SIGKILL it once it outlived ``grace`` seconds or ``hurry`` is set.

        Shielded from cancellation: a stop always finishes.
        """
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                self._signal_all(signal.SIGTERM)
                async with trio.open_nursery() as nursery:

                    async def cut_short() -> None:
                        if hurry is not None:
                            await hurry.wait()
                            nursery.cancel_scope.cancel()

                    nursery.start_soon(cut_short)
                    with trio.move_on_after(grace):
                        await self._all_gone()
                    nursery.cancel_scope.cancel()
                self._signal_all(signal.SIGKILL)
            code = await self.wait()
        return code

    async def _all_gone(self) -> None:
        await self.process.wait()
        while self.members():
            await trio.sleep(POLL_INTERVAL)


async def spawn(
    spec: ProcessSpec,
    *,
    guard: GroupGuard,
    on_line: LineSink | None = None,
    nursery: trio.Nursery | None = None,
    owners: Owners = SHARED_OWNERS,
    forker: Forker | None = None,
    pad_owner: bool = False,
) -> ManagedProcess:
    """Start ``spec`` in a new session, its output on ``spec.log_path`` or to ``on_line``.

    With ``on_line``, the line reader runs in ``nursery`` and ends when the
    last holder of the output pipe (usually the child) exits.  A spawn with a
    ``log_path`` is asked of ``forker`` first, if given.  ``pad_owner`` leaves
    room after the owner tag for a forked child to write its own.
    """
    tag = owners.next_tag()
    env = {**spec.env, lineage.OWNER_ENV: padded_owner(tag) if pad_owner else tag}
    output: int | None = None
    process: Child | None = None
    try:
        if spec.log_path is not None:
            output = os.open(spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if forker is not None and output is not None:
            process = await forker.fork(spec, env=env, output=output, tag=tag)
        if process is None:
            process = await _open_process(spec, env, output)
    except OSError as exc:
        raise ProcessStartError(f"could not start {spec.name} ({spec.argv[0]}): {exc}") from exc
    finally:
        if output is not None:
            os.close(output)
    managed = ManagedProcess(spec=spec, process=process, guard=guard, tag=tag)
    with trio.CancelScope(shield=True):
        await guard.register(managed.pgid)
    stdout = getattr(process, "stdout", None)
    if stdout is not None:
        if on_line is None or nursery is None:
            raise ValueError("a spawn without log_path needs on_line and a nursery")
        nursery.start_soon(_pump_lines, stdout, on_line)
    return managed


async def _open_process(spec: ProcessSpec, env: dict[str, str], output: int | None) -> trio.Process:
    return await trio.lowlevel.open_process(
        list(spec.argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if output is None else output,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=spec.cwd,
        start_new_session=True,
        pass_fds=spec.pass_fds,
    )


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
