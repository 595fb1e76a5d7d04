"""Which processes descend from a spawn of this control plane, read from ``/proc``.

A process group is not enough to find everything an app started: a daemon
(fork, ``setsid``, fork) leaves its group and its session.  So every spawn
carries an owner tag in its environment (``MESHKIT_OWNER=<run>.<n>.``), which
its descendants inherit, and the members of a spawn are the live processes of
its group plus those whose environment carries its tag.  The run-wide prefix
lets the guardian find every descendant of a control plane that is gone.

The control plane is also a child subreaper (``PR_SET_CHILD_SUBREAPER``):
orphans it kills are re-parented to it rather than to init, and it reaps them
(``reap``), so none stays behind as a zombie of an unrelated process.

Standard library only: the guardian imports this module and must start fast.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

OWNER_ENV = "MESHKIT_OWNER"
PR_SET_CHILD_SUBREAPER = 36
PROC = Path("/proc")


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def owner_tag(run_id: str, sequence: int) -> str:
    """``<run>.<n>.``: the trailing dot keeps every tag from being a prefix of another,
    so ``tagged("<run>.")`` finds a whole run and ``tagged(tag)`` one spawn."""
    return f"{run_id}.{sequence}."


class Owners:
    """Hands out the owner tags of one run: ``<run>.1.``, ``<run>.2.``, ..."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = new_run_id() if run_id is None else run_id
        self._sequence = itertools.count(1)

    @property
    def prefix(self) -> str:
        return f"{self.run_id}."

    def next_tag(self) -> str:
        return owner_tag(self.run_id, next(self._sequence))


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False where Linux says no."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class ProcessState(NamedTuple):
    zombie: bool
    pgid: int


def _state(pid: int) -> ProcessState | None:
    """Whether ``pid`` is a zombie, and its process group; None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return ProcessState(zombie=fields[0] == "Z", pgid=int(fields[2]))


def owner_of(pid: int) -> str | None:
    """The owner tag in ``pid``'s environment, None without one (or if unreadable)."""
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    needle = OWNER_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(needle):
            return entry[len(needle) :].decode("ascii", errors="replace")
    return None


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (of all its threads)."""
    children: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return children
    for task in tasks:
        try:
            children.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return children


def tree(roots: Iterable[int]) -> dict[int, ProcessState]:
    """Every process under ``roots`` (roots included) with its state."""
    found: dict[int, ProcessState] = {}
    pending = list(roots)
    while pending:
        pid = pending.pop()
        if pid in found:
            continue
        state = _state(pid)
        if state is None:
            continue
        found[pid] = state
        pending.extend(children_of(pid))
    return found


def spawn_members(leader: int, tag: str) -> dict[int, ProcessState]:
    """The processes of one spawn: the tree under its leader and under our adopted orphans
    that carry its tag (a subreaper adopts what left the tree), with their states."""
    adopted = [pid for pid in children_of(os.getpid()) if pid != leader and owner_of(pid) == tag]
    return tree([leader, *adopted])


def tagged(prefix: str) -> set[int]:
    """Live processes anywhere whose owner tag starts with ``prefix`` (a full ``/proc`` scan)."""
    found: set[int] = set()
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        owner = owner_of(pid)
        if owner is None or not owner.startswith(prefix):
            continue
        state = _state(pid)
        if state is not None and not state.zombie:
            found.add(pid)
    return found


def signal_all(pids: Iterable[int], signum: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            continue


def reap(pids: Iterable[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our exited children (adopted orphans).

    Never pass the pid of a child someone else waits for (a trio ``Process``).
    """
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
