"""Where process output goes: a file per process and the terminal.

Each line of an app goes to ``.meshkit/logs/<instance>.log`` (its sidecar's to
``<instance>.proxy.log``) and to the terminal as ``HH:MM:SS name | line``.
Each service gets a stable colour (a hash of its name); no colour when the
terminal is not a TTY or ``NO_COLOR`` is set.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import IO

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


def format_line(
    *, name: str, line: str, colour_key: str, coloured: bool, now: float | None = None
) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(time.time() if now is None else now))
    prefix = f"{stamp} {name} |"
    if coloured:
        prefix = f"\x1b[{colour_for(colour_key)}m{prefix}{RESET}"
    return f"{prefix} {line}"


class LogHub:
    """Opens per-process log files under ``log_dir`` and writes lines to them."""

    def __init__(self, log_dir: Path, *, terminal: IO[str] | None = None) -> None:
        self.log_dir = log_dir
        self.terminal = sys.stdout if terminal is None else terminal
        self.coloured = use_colour(self.terminal)
        self._files: dict[str, IO[str]] = {}

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
        self.hub.terminal.write(
            format_line(
                name=self.display_name,
                line=line,
                colour_key=self.colour_key,
                coloured=self.hub.coloured,
            )
            + "\n"
        )
        self.hub.terminal.flush()
