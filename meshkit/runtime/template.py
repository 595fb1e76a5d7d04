"""The control plane's side of the sidecar template (``meshkit.proxy.template``).

``meshkit.runtime.template_start`` starts the template as early as ``meshkit
up`` can, so that its imports overlap the control plane's;
``SidecarTemplate.adopt`` then registers its group with the guardian and
waits for it like any spawn.  ``fork`` asks it for one sidecar (``meshkit.api.template``) and
gives back a ``ForkedProcess``: the sidecar's pid, adopted by this process
(a child subreaper), waited for through a pidfd, so that its exit status is
the kernel's, whatever becomes of the template.  ``fork_evaluator`` asks it
for the Meshfile's evaluator child (``meshkit.dsl.evaluate.warm``), with an
owner tag of this run and its group guarded like any spawn's, so that the
guardian kills it too if the control plane dies.

When the template cannot serve (it exited, its socket broke, it refused or
did not answer in time), ``fork`` says why once on the terminal and returns
None from then on: the caller spawns the sidecar the ordinary way.
"""

from __future__ import annotations

import array
import os
import socket
import sys
from collections.abc import Callable, Sequence

import trio

from meshkit.api.template import (
    EVALUATOR,
    ForkRequest,
    FrameReader,
    TemplateProtocolError,
    encode,
    fork_answer,
)
from meshkit.runtime import lineage
from meshkit.runtime.lineage import Owners
from meshkit.runtime.process import GroupGuard, ManagedProcess, ProcessSpec
from meshkit.runtime.template_start import TEMPLATE_ARGV, StartedTemplate

SIDECAR_PREFIX: tuple[str, ...] = (sys.executable, "-m", "meshkit.proxy")
EVALUATOR_ARGV: tuple[str, ...] = (sys.executable, "-m", "meshkit.dsl.evaluate.child")
# A fork is milliseconds; on a loaded machine give it much longer before spawning instead.
FORK_TIMEOUT = 10.0
RECEIVE_SIZE = 4096


class ForkedProcess:
    """A sidecar forked by the template and adopted by this process: ``pid``,
    ``returncode`` (negative: killed by that signal, as for a spawn) and ``wait``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pidfd: int | None = os.pidfd_open(pid)
        self._lock = trio.Lock()
        self.returncode: int | None = None

    async def wait(self) -> int:
        async with self._lock:
            while self.returncode is None:
                assert self._pidfd is not None
                await trio.lowlevel.wait_readable(self._pidfd)
                self._collect()
        return self.returncode

    def _collect(self) -> None:
        assert self._pidfd is not None
        info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        if info is None or info.si_pid == 0:
            return
        exited = info.si_code == os.CLD_EXITED
        self.returncode = info.si_status if exited else -info.si_status
        os.close(self._pidfd)
        self._pidfd = None


class SidecarTemplate:
    """A supervised template and the socket to it: ``start_template``, then ``adopt``."""

    def __init__(
        self,
        managed: ManagedProcess,
        link: trio.socket.SocketType,
        say: Callable[[str], None],
        owners: Owners | None = None,
    ) -> None:
        self.managed = managed
        self._link = link
        self._say = say
        self.owners = owners or Owners()
        self._reader = FrameReader()
        self._lock = trio.Lock()
        self.broken: str | None = None

    @classmethod
    async def adopt(
        cls, started: StartedTemplate, *, guard: GroupGuard, say: Callable[[str], None]
    ) -> SidecarTemplate:
        """Supervise a template ``start_template`` started: guard its group, wait for it."""
        spec = ProcessSpec(name="sidecar template", argv=TEMPLATE_ARGV)
        process = ForkedProcess(started.pid)
        managed = ManagedProcess(spec=spec, process=process, guard=guard, tag=started.tag)
        with trio.CancelScope(shield=True):
            await guard.register(managed.pgid)
        link = trio.socket.from_stdlib_socket(started.link)
        return cls(managed, link, say, started.owners)

    def serves(self, argv: Sequence[str]) -> bool:
        return self.broken is None and tuple(argv[: len(SIDECAR_PREFIX)]) == SIDECAR_PREFIX

    async def fork(
        self, spec: ProcessSpec, *, env: dict[str, str], output: int, tag: str
    ) -> ForkedProcess | None:
        """Fork ``spec`` (a sidecar's spawn) with its output on ``output``; None: spawn it."""
        if not self.serves(spec.argv):
            return None
        request = ForkRequest(
            args=tuple(spec.argv[len(SIDECAR_PREFIX) :]),
            env=env,
            cwd=spec.cwd,
            fds=(1, *spec.pass_fds),
            output=True,
            owner=(lineage.OWNER_ENV, tag),
        )
        return await self._fork(request, [output, *spec.pass_fds], spec.name)

    async def fork_evaluator(
        self, meshfile: str, *, env: dict[str, str], stdio: tuple[int, int, int]
    ) -> ManagedProcess | None:
        """Fork ``python -m meshkit.dsl.evaluate.child MESHFILE`` in the Meshfile's
        directory with ``stdio`` as its stdin, stdout and stderr; None: spawn it."""
        if self.broken is not None:
            return None
        tag = self.owners.next_tag()
        request = ForkRequest(
            args=(meshfile,),
            env={**env, lineage.OWNER_ENV: tag},  # what it starts carries the tag too
            cwd=os.path.dirname(meshfile),
            fds=(0, 1, 2),
            owner=(lineage.OWNER_ENV, tag),
            program=EVALUATOR,
        )
        # Shielded: a reload given up must neither leave an answer unread on the socket
        # nor lose the pid of a fork it can still kill.
        with trio.CancelScope(shield=True):
            forked = await self._fork(request, list(stdio), "the Meshfile's evaluator")
            if forked is None:
                return None
            spec = ProcessSpec(name="Meshfile evaluator", argv=(*EVALUATOR_ARGV, meshfile))
            guard = self.managed.guard
            managed = ManagedProcess(spec=spec, process=forked, guard=guard, tag=tag)
            await guard.register(managed.pgid)
        return managed

    async def _fork(self, request: ForkRequest, fds: list[int], name: str) -> ForkedProcess | None:
        async with self._lock:
            try:
                with trio.fail_after(FORK_TIMEOUT):
                    answer = await self._ask(request, fds)
            except (OSError, TemplateProtocolError, trio.TooSlowError) as exc:
                self._give_up(f"it did not answer ({exc or 'timed out'})")
                return None
        if isinstance(answer, str):
            self._say(f"meshkit: the sidecar template could not fork {name}: {answer}")
            return None
        return ForkedProcess(answer)

    async def _ask(self, request: ForkRequest, fds: list[int]) -> int | str:
        if self.managed.returncode is not None:
            raise OSError(f"it exited with status {self.managed.returncode}")
        frame = encode(request.to_json())
        sent = await self._link.sendmsg(
            [frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        )
        if sent < len(frame):
            await self._send_rest(frame[sent:])
        while True:
            data = await self._link.recv(RECEIVE_SIZE)
            if not data:
                raise OSError("it closed its socket")
            messages = self._reader.feed(data)
            if messages:
                return fork_answer(messages[0])

    async def _send_rest(self, data: bytes) -> None:
        while data:
            sent = await self._link.send(data)
            data = data[sent:]

    def _give_up(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
            self._say(
                f"meshkit: the sidecar template is unavailable: {why}; sidecars start by spawn"
            )

    async def close(self, *, grace: float) -> None:
        """Close the socket (the template exits at its end) and stop what is left."""
        self.broken = self.broken or "closed"
        self._link.close()
        await self.managed.stop(grace=grace)
