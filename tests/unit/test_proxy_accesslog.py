from __future__ import annotations

import json

import trio

from meshkit.proxy.telemetry.accesslog import AccessLog


def line(fields: bytes) -> bytes:
    """A text line as written at ``clock=lambda: 0.5`` with no upstream, bytes or ids."""
    return (
        b"1970-01-01T00:00:00.500Z access "
        + fields
        + b" upstream=- in=0 out=0 request_id=- trace_id=-\n"
    )


def test_lines_are_batched_until_the_buffer_fills() -> None:
    written: list[bytes] = []
    log = AccessLog(write=written.append, max_buffered=250, json_lines=False, clock=lambda: 0.5)
    log.record(method=b"GET", target=b"/a", status=200, duration_ms=1.25, flag="-")
    assert written == []
    for _ in range(4):
        log.record(method=b"POST", target=b"/items", status=503, duration_ms=12.0, flag="UF")
    assert len(written) == 1
    assert written[0].startswith(
        b"1970-01-01T00:00:00.500Z access GET /a 200 1.2ms - upstream=- in=0 out=0"
        b" request_id=- trace_id=-\n"
        b"1970-01-01T00:00:00.500Z access POST /items 503 12.0ms UF upstream=- in=0 out=0"
        b" request_id=- trace_id=-\n"
    )
    log.flush()
    log.flush()
    assert len(written) <= 2


async def test_the_flusher_writes_quiet_lines_and_flushes_when_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    written: list[bytes] = []
    log = AccessLog(write=written.append, json_lines=False, clock=lambda: 0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.run_flusher, 0.1)
        log.record(method=b"GET", target=b"/", status=200, duration_ms=0.5, flag="-")
        await trio.sleep(0.15)
        assert written == [line(b"GET / 200 0.5ms -")]
        log.record(method=b"GET", target=b"/late", status=404, duration_ms=0.5, flag="NR")
        nursery.cancel_scope.cancel()
    assert written[-1] == line(b"GET /late 404 0.5ms NR")


def test_a_failed_write_drops_its_lines_and_the_next_one_says_how_many() -> None:
    written: list[bytes] = []
    failing = True

    def write(data: bytes) -> None:
        if failing:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        written.append(data)

    log = AccessLog(write=write, json_lines=False, clock=lambda: 0.5)
    for path in (b"/a", b"/b"):
        log.record(method=b"GET", target=path, status=200, duration_ms=1.0, flag="-")
    log.flush()
    log.record(method=b"GET", target=b"/c", status=200, duration_ms=1.0, flag="-")
    log.flush()
    assert log.dropped == 3 and written == []
    failing = False
    log.record(method=b"GET", target=b"/d", status=200, duration_ms=1.0, flag="-")
    log.flush()
    assert written == [b"meshkit: 3 access log lines dropped\n" + line(b"GET /d 200 1.0ms -")]
    log.record(method=b"GET", target=b"/e", status=200, duration_ms=1.0, flag="-")
    log.flush()
    assert written[-1] == line(b"GET /e 200 1.0ms -")


def test_a_line_names_the_upstream_bytes_request_and_trace() -> None:
    written: list[bytes] = []
    log = AccessLog(write=written.append, json_lines=False, clock=lambda: 1764631218.25)
    log.record(
        method=b"GET",
        target=b"/items",
        status=200,
        duration_ms=3.0,
        flag="-",
        upstream="catalog-v1-0",
        bytes_in=5,
        bytes_out=512,
        request_id=b"r-1",
        trace_id="ab" * 16,
    )
    log.flush()
    assert written == [
        b"2025-12-01T23:20:18.250Z access GET /items 200 3.0ms - upstream=catalog-v1-0 in=5"
        b" out=512 request_id=r-1 trace_id=" + b"ab" * 16 + b"\n"
    ]


def test_json_lines_carry_the_same_fields() -> None:
    written: list[bytes] = []
    log = AccessLog(write=written.append, json_lines=True, clock=lambda: 0.5)
    log.record(method=b"POST", target=b"/x", status=503, duration_ms=1.25, flag="UF", bytes_in=2)
    log.flush()
    assert json.loads(written[0]) == {
        "time": "1970-01-01T00:00:00.500Z",
        "log": "access",
        "method": "POST",
        "path": "/x",
        "status": 503,
        "duration_ms": 1.2,
        "flag": "UF",
        "upstream": None,
        "bytes_in": 2,
        "bytes_out": 0,
        "request_id": None,
        "trace_id": None,
    }
    assert written[0].endswith(b"}\n")
