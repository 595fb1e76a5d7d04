"""The access log: one line per request, written in batches.

A line per request through the ``logging`` module cost a sidecar about a
third of its throughput (one formatting pass through the logging machinery
and one ``write`` system call per request).  Here a line is formatted with a
single bytes ``%`` and appended to a buffer; the buffer is written with one
system call when it passes ``max_buffered`` bytes, when the flusher task
wakes (every ``interval`` seconds, so a quiet sidecar's log is never older
than that), and at shutdown.  Line format:
``<method> <target> <status> <duration>ms <flag>``.

A request never waits for its log line: the sidecar's stderr is its own log
file (``meshkit.runtime.logs``), and a write that fails (a full disk, a
non-blocking pipe nobody reads) drops the batch and counts its lines; the
next write that succeeds says how many were dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

FLUSH_INTERVAL = 0.1
MAX_BUFFERED = 16 * 1024


def _write_stderr(data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(2, view)
        view = view[written:]


class AccessLog:
    def __init__(
        self,
        *,
        write: Callable[[bytes], None] = _write_stderr,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self._write = write
        self._max_buffered = max_buffered
        self._lines: list[bytes] = []
        self._size = 0
        self.dropped = 0  # lines lost to failed writes, ever
        self._unreported = 0

    def record(
        self, *, method: bytes, target: bytes, status: int, duration_ms: float, flag: str
    ) -> None:
        line = b"%s %s %d %.1fms %s\n" % (method, target, status, duration_ms, flag.encode())
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self._max_buffered:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        lines = self._lines
        self._lines = []
        self._size = 0
        if self._unreported:
            lines.insert(0, b"meshkit: %d access log lines dropped\n" % self._unreported)
        try:
            self._write(b"".join(lines))
        except OSError:
            lost = len(lines) - (1 if self._unreported else 0)
            self.dropped += lost
            self._unreported += lost
            return
        self._unreported = 0

    async def run_flusher(self, interval: float = FLUSH_INTERVAL) -> None:
        """Flush every ``interval`` seconds until cancelled, then once more."""
        try:
            while True:
                await trio.sleep(interval)
                self.flush()
        finally:
            self.flush()
