"""The access log: one line per request, written in batches.

A line per request through the ``logging`` module cost a sidecar about a
third of its throughput (one formatting pass through the logging machinery
and one ``write`` system call per request).  Here a line is formatted with a
single bytes ``%`` and appended to a buffer; the buffer is written with one
system call when it passes ``max_buffered`` bytes, when the flusher task
wakes (every ``interval`` seconds, so a quiet sidecar's log is never older
than that), and at shutdown.  A text line (the default) reads::

    2026-12-01T23:13:38.123Z access GET /items 200 12.3ms - upstream=catalog-v1-0 in=0 out=512 request_id=... trace_id=...

(time in UTC, method, target, status, duration, flag, the instance that
served it, request and response body bytes, ``x-request-id`` and trace id;
``-`` when unknown).  With ``MESHKIT_ACCESS_LOG_FORMAT=json`` (set by
``meshkit up --access-log-format json``) each line is one JSON object with
the same fields.  The word ``access`` after the time is how the terminal
view and ``meshkit logs`` tell these lines from the sidecar's other lines.

A request never waits for its log line: the sidecar's stderr is its own log
file (``meshkit.runtime.logs``), and a write that fails (a full disk, a
non-blocking pipe nobody reads) drops the batch and counts its lines; the
next write that succeeds says how many were dropped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import trio

FLUSH_INTERVAL = 0.1
MAX_BUFFERED = 16 * 1024
FORMAT_VARIABLE = "MESHKIT_ACCESS_LOG_FORMAT"
ACCESS_WORD = "access"


def _utc_stamp(now: float, cache: list[object]) -> bytes:
    """``now`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; the part up to the second is formatted once a second."""
    second = int(now)
    if cache[0] != second:
        cache[0] = second
        cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
    prefix = cache[1]
    assert isinstance(prefix, bytes)
    return b"%s.%03dZ" % (prefix, int((now - second) * 1000))


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
        json_lines: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._write = write
        self._json = os.environ.get(FORMAT_VARIABLE) == "json" if json_lines is None else json_lines
        self._clock = clock
        self._stamp_cache: list[object] = [None, b""]
        self._max_buffered = max_buffered
        self._lines: list[bytes] = []
        self._size = 0
        self.dropped = 0  # lines lost to failed writes, ever
        self._unreported = 0

    def record(
        self,
        *,
        method: bytes,
        target: bytes,
        status: int,
        duration_ms: float,
        flag: str,
        upstream: str | None = None,
        bytes_in: int = 0,
        bytes_out: int = 0,
        request_id: bytes | None = None,
        trace_id: str | None = None,
    ) -> None:
        stamp = _utc_stamp(self._clock(), self._stamp_cache)
        if self._json:
            line = self._json_line(
                stamp,
                method,
                target,
                status,
                duration_ms,
                flag,
                upstream,
                bytes_in,
                bytes_out,
                request_id,
                trace_id,
            )
        else:
            line = (
                b"%s access %s %s %d %.1fms %s upstream=%s in=%d out=%d request_id=%s trace_id=%s\n"
                % (
                    stamp,
                    method,
                    target,
                    status,
                    duration_ms,
                    flag.encode(),
                    (upstream or "-").encode(),
                    bytes_in,
                    bytes_out,
                    request_id or b"-",
                    (trace_id or "-").encode(),
                )
            )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self._max_buffered:
            self.flush()

    @staticmethod
    def _json_line(
        stamp: bytes,
        method: bytes,
        target: bytes,
        status: int,
        duration_ms: float,
        flag: str,
        upstream: str | None,
        bytes_in: int,
        bytes_out: int,
        request_id: bytes | None,
        trace_id: str | None,
    ) -> bytes:
        record = {
            "time": stamp.decode(),
            "log": ACCESS_WORD,
            "method": method.decode("ascii", "replace"),
            "path": target.decode("ascii", "replace"),
            "status": status,
            "duration_ms": round(duration_ms, 1),
            "flag": flag,
            "upstream": upstream,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "request_id": None if request_id is None else request_id.decode("ascii", "replace"),
            "trace_id": trace_id,
        }
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"

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
