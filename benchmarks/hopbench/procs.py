"""Servers in their own process groups, and what ``/proc`` says about them.

Every server the benchmark starts is a ``Server``: a child in a new session (so
its process group id is its pid and a Ctrl-C in the terminal does not reach it
before we decide to stop it), with its output in a log file.  A ``Servers``
stack owns them and stops them all, newest first, when its ``with`` block ends
for any reason, including ``KeyboardInterrupt``.

``ProcessTree`` reads CPU time and resident memory of a process and its
descendants (an nginx master and its worker; a sidecar and anything it spawns).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import attrs

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class BenchError(Exception):
    """Something the benchmark cannot go on without; its message is for the person running it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log {path})"


@attrs.frozen(kw_only=True)
class ProcessIdentity:
    """A pid and its start time: two together never name two different processes."""

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        stat = _read_stat(pid)
        return None if stat is None else cls(pid=pid, start_ticks=int(stat[19]))

    def is_alive(self) -> bool:
        stat = _read_stat(self.pid)
        return stat is not None and int(stat[19]) == self.start_ticks and stat[0] != "Z"


def _read_stat(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (state first), or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses; it ends at the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, parents before children."""
    children = _children_by_parent()
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop(0)
        if _read_stat(current) is None:
            continue
        found.append(current)
        todo.extend(children.get(current, []))
    return found


@attrs.frozen(kw_only=True)
class ProcessTree:
    """A process and its descendants as they were when ``of`` was called."""

    root: int
    pids: tuple[int, ...]

    @classmethod
    def of(cls, root: int) -> ProcessTree:
        pids = descendants(root)
        if not pids:
            raise BenchError(f"process {root} is not running, so it cannot be measured")
        return cls(root=root, pids=tuple(pids))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the tree's processes still alive, in seconds."""
        ticks = 0
        for pid in self.pids:
            stat = _read_stat(pid)
            if stat is not None:
                ticks += int(stat[11]) + int(stat[12])
        return ticks / CLOCK_TICKS_PER_SECOND

    def rss_bytes(self) -> int:
        """The sum of ``VmRSS`` over the tree's processes still alive."""
        total = 0
        for pid in self.pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total


class Server:
    """One child process in its own session, with its output in ``log_path``."""

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.process.pid

    def ensure_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(
                f"{self.name} exited with status {code}; its log ({self.log_path}) ends with:\n"
                f"{log_tail(self.log_path)}"
            )

    def wait_for_port(self, port: int, *, timeout: float = 10.0) -> None:
        """Return once 127.0.0.1:``port`` accepts a connection; fail if we exit first."""
        deadline = time.monotonic() + timeout
        while True:
            self.ensure_running()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s; "
                    f"its log ({self.log_path}) ends with:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, *, first_signal: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """Signal the whole process group, wait ``grace`` seconds, then SIGKILL what is left.

        Processes that moved to process groups of their own (a supervisor's
        children) are found through ``/proc`` beforehand and killed if they
        outlive the grace period.
        """
        tree = [ProcessIdentity.of(pid) for pid in descendants(self.pid)]
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, first_signal)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        deadline = time.monotonic() + 2.0
        survivors = [ident for ident in tree if ident is not None and ident.is_alive()]
        while survivors and time.monotonic() < deadline:
            time.sleep(0.05)
            survivors = [ident for ident in survivors if ident.is_alive()]
        for ident in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(ident.pid, signal.SIGKILL)


class Servers:
    """Owns the servers started inside its ``with`` block and stops them all at its end."""

    def __init__(self) -> None:
        self._started: list[tuple[Server, int]] = []

    def start(
        self,
        *,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Server:
        server = Server(name=name, argv=argv, log_path=log_path, cwd=cwd, env=env)
        self._started.append((server, stop_signal))
        return server

    def stop_all(self) -> None:
        while self._started:
            server, stop_signal = self._started.pop()
            server.stop(first_signal=stop_signal)

    def __enter__(self) -> Servers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Let ``kill <benchmark pid>`` unwind like Ctrl-C, so every ``finally`` runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
