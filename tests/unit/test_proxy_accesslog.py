from __future__ import annotations

import trio

from meshkit.proxy.telemetry.accesslog import AccessLog


def test_lines_are_batched_until_the_buffer_fills() -> None:
    written: list[bytes] = []
    log = AccessLog(write=written.append, max_buffered=100)
    log.record(method=b"GET", target=b"/a", status=200, duration_ms=1.25, flag="-")
    assert written == []
    for _ in range(4):
        log.record(method=b"POST", target=b"/items", status=503, duration_ms=12.0, flag="UF")
    assert len(written) == 1
    assert written[0].startswith(b"GET /a 200 1.2ms -\nPOST /items 503 12.0ms UF\n")
    log.flush()
    log.flush()
    assert len(written) <= 2


async def test_the_flusher_writes_quiet_lines_and_flushes_when_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    written: list[bytes] = []
    log = AccessLog(write=written.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.run_flusher, 0.1)
        log.record(method=b"GET", target=b"/", status=200, duration_ms=0.5, flag="-")
        await trio.sleep(0.15)
        assert written == [b"GET / 200 0.5ms -\n"]
        log.record(method=b"GET", target=b"/late", status=404, duration_ms=0.5, flag="NR")
        nursery.cancel_scope.cancel()
    assert written[-1] == b"GET /late 404 0.5ms NR\n"


def test_a_failed_write_drops_its_lines_and_the_next_one_says_how_many() -> None:
    written: list[bytes] = []
    failing = True

    def write(data: bytes) -> None:
        if failing:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        written.append(data)

    log = AccessLog(write=write)
    for path in (b"/a", b"/b"):
        log.record(method=b"GET", target=path, status=200, duration_ms=1.0, flag="-")
    log.flush()
    log.record(method=b"GET", target=b"/c", status=200, duration_ms=1.0, flag="-")
    log.flush()
    assert log.dropped == 3 and written == []
    failing = False
    log.record(method=b"GET", target=b"/d", status=200, duration_ms=1.0, flag="-")
    log.flush()
    assert written == [b"meshkit: 3 access log lines dropped\nGET /d 200 1.0ms -\n"]
    log.record(method=b"GET", target=b"/e", status=200, duration_ms=1.0, flag="-")
    log.flush()
    assert written[-1] == b"GET /e 200 1.0ms -\n"
