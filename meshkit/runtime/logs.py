"""Where process output goes: a file per process and the terminal.

An app writes to ``.meshkit/logs/<instance>.log`` itself (its stdout and
stderr are that file, appended to; its sidecar's are ``<instance>.proxy.log``),
so nothing a process writes ever waits for the control plane: a stopped or
slow ``meshkit up`` cannot block a request.  The terminal view follows those
files (``LogHub.follow`` and the ``tail_files`` task) and shows each new line
as ``HH:MM:SS name | line``; the sidecars' access-log lines stay in the
files unless ``show_access`` (``meshkit up --access-log``).  A file that
grows past ``max_bytes`` (10 MiB) is rotated: copied to ``<file>.1`` (older
copies move up to ``.<keep>``, 3 by default; the oldest goes), then cut back
to empty, so a process holding it open writes on at its start.  Each service gets a stable colour (a hash
of its name); no colour when the terminal is not a TTY or ``NO_COLOR`` is set.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import IO

import trio

ACCESS_WORD = "access"  # the word after the time on an access-log line (proxy.telemetry.accesslog)

MAX_LOG_BYTES = 10 * 1024 * 1024
KEEP_ROTATED = 3
TAIL_INTERVAL = 0.2
COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
RESET = "\x1b[0m"


def colour_for(name: str) -> int:
    """An ANSI colour code that depends only on ``name``."""
    digest = hashlib.blake2s(name.encode(), digest_size=2).digest()
    return COLOURS[int.from_bytes(digest, "big") % len(COLOURS)]


def use_colour(stream: IO[str]) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def is_access_line(line: str) -> bool:
    """Whether ``line`` is a sidecar's access-log line (text or JSON)."""
    head = line[:40]
    return head.startswith('{"time"') or head[24:32] == f" {ACCESS_WORD} "


def rotate(path: Path, *, keep: int) -> None:
    """Copy ``path`` to ``path.1`` (shifting older copies up to ``.keep``), then empty it."""
    for generation in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{generation}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{generation + 1}"))
    if keep > 0:
        with open(path, "rb") as source, open(path.with_name(f"{path.name}.1"), "wb") as copy:
            while chunk := source.read(1024 * 1024):
                copy.write(chunk)
    os.truncate(path, 0)


def format_line(
    *, name: str, line: str, colour_key: str, coloured: bool, now: float | None = None
) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(time.time() if now is None else now))
    prefix = f"{stamp} {name} |"
    if coloured:
        prefix = f"\x1b[{colour_for(colour_key)}m{prefix}{RESET}"
    return f"{prefix} {line}"


class FollowedFile:
    """A log file the terminal view shows, and how far it has been read."""

    def __init__(self, path: Path, *, colour_key: str) -> None:
        self.path = path
        self.colour_key = colour_key
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = b""

    def new_lines(self, *, final: bool = False) -> list[str]:
        """The complete lines written since the last call (and a trailing part if ``final``)."""
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # cut back: start again from the top
                    self.offset, self.partial = 0, b""
                handle.seek(self.offset)
                data = handle.read(max(size - self.offset, 0))
        except OSError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        return [line.rstrip(b"\r").decode("utf-8", errors="replace") for line in lines]


class LogHub:
    """The log files under ``log_dir``: their paths, the lines meshkit writes, the terminal view."""

    def __init__(
        self,
        log_dir: Path,
        *,
        terminal: IO[str] | None = None,
        max_bytes: int = MAX_LOG_BYTES,
        keep: int = KEEP_ROTATED,
        show_access: bool = False,
    ) -> None:
        self.log_dir = log_dir
        self.terminal = sys.stdout if terminal is None else terminal
        self.coloured = use_colour(self.terminal)
        self.max_bytes = max_bytes
        self.keep = keep
        self.show_access = show_access
        self._files: dict[str, IO[str]] = {}
        self._followed: dict[str, FollowedFile] = {}

    def path(self, file_stem: str) -> Path:
        return self.log_dir / f"{file_stem}.log"

    def follow(self, *, file_stem: str, colour_key: str) -> Path:
        """Show the new lines of ``<file_stem>.log`` on the terminal (once ``tail_files`` runs)."""
        path = self.path(file_stem)
        if file_stem not in self._followed:
            self._followed[file_stem] = FollowedFile(path, colour_key=colour_key)
        return path

    async def tail_files(self, interval: float = TAIL_INTERVAL) -> None:
        """Until cancelled (then once more): show new lines, cut back files that grew too big."""
        try:
            while True:
                self._show_new_lines(final=False)
                await trio.sleep(interval)
        finally:
            self._show_new_lines(final=True)

    def _show_new_lines(self, *, final: bool) -> None:
        for stem, followed in list(self._followed.items()):
            for line in followed.new_lines(final=final):
                if not self.show_access and is_access_line(line):
                    continue
                self.show(display_name=stem, colour_key=followed.colour_key, line=line)
            if followed.offset > self.max_bytes:
                self._cut_back(followed)

    def _cut_back(self, followed: FollowedFile) -> None:
        try:
            rotate(followed.path, keep=self.keep)
            with open(followed.path, "a", encoding="utf-8") as handle:
                handle.write(f"meshkit: log rotated after {followed.offset} bytes\n")
        except OSError:
            return
        followed.offset, followed.partial = 0, b""

    def show(self, *, display_name: str, colour_key: str, line: str) -> None:
        """One line of a process on the terminal (a stopped terminal blocks only meshkit)."""
        self.terminal.write(
            format_line(name=display_name, line=line, colour_key=colour_key, coloured=self.coloured)
            + "\n"
        )
        self.terminal.flush()

    def sink(self, *, file_stem: str, display_name: str, colour_key: str) -> LogSink:
        handle = self._files.get(file_stem)
        if handle is None:
            handle = open(self.log_dir / f"{file_stem}.log", "a", encoding="utf-8")  # noqa: SIM115
            self._files[file_stem] = handle
        return LogSink(hub=self, handle=handle, display_name=display_name, colour_key=colour_key)

    def announce(self, message: str) -> None:
        """A line from meshkit itself, on the terminal only."""
        self.terminal.write(message + "\n")
        self.terminal.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


class LogSink:
    """The destination of one process's lines."""

    def __init__(self, *, hub: LogHub, handle: IO[str], display_name: str, colour_key: str) -> None:
        self.hub = hub
        self.handle = handle
        self.display_name = display_name
        self.colour_key = colour_key

    def write_line(self, line: str) -> None:
        if self.handle.closed:
            return
        self.handle.write(line + "\n")
        self.handle.flush()
        self.hub.show(display_name=self.display_name, colour_key=self.colour_key, line=line)
