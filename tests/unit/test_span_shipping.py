"""How a sidecar ships its spans (``ship_spans``): in batches, at the interval, under load too."""

from __future__ import annotations

from typing import Any

import trio

from meshkit.api.control import ControlPlaneError
from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.telemetry.spans import BATCH, SHIP_INTERVAL, Tracer, ship_spans

HEAD = RequestHead(method=b"GET", target=b"/items", headers=[], http_version=b"1.1")


def finish_one(tracer: Tracer) -> None:
    span, _ = tracer.begin(HEAD, kind="server")
    tracer.finish(
        span, service="catalog", instance="catalog-0", method=b"GET", target=b"/items",
        upstream="app", status=200, flag="-", duration_ms=1.0,
    )  # fmt: skip


async def traffic(tracer: Tracer, *, per_second: int, seconds: float) -> None:
    """``per_second`` finished spans a second, one every 1/``per_second`` s."""
    for _ in range(round(per_second * seconds)):
        finish_one(tracer)
        await trio.sleep(1 / per_second)


async def test_under_steady_load_spans_go_in_one_batch_per_interval(autojump_clock: Any) -> None:
    """A send takes a while (the control plane is busy); spans that finish meanwhile wait
    for the next interval instead of going at once in a batch of their own: one request
    per interval, not one after another as fast as the control plane answers."""
    tracer = Tracer()
    batches: list[int] = []

    async def send(rows: list[list[Any]]) -> None:
        await trio.sleep(0.005)
        batches.append(len(rows))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ship_spans, tracer, send)
        await traffic(tracer, per_second=400, seconds=5.0)
        await trio.sleep(SHIP_INTERVAL * 2)
        nursery.cancel_scope.cancel()
    assert sum(batches) == 2000 and tracer.shipped == 2000
    intervals = 5.0 / SHIP_INTERVAL
    assert len(batches) <= intervals + 2, batches
    assert min(batches[:-1]) >= 400 * SHIP_INTERVAL * 0.9, batches


async def test_a_backlog_larger_than_a_batch_goes_out_in_full_batches_at_once(
    autojump_clock: Any,
) -> None:
    tracer = Tracer()
    for _ in range(BATCH * 2 + 10):
        finish_one(tracer)
    sent: list[tuple[float, int]] = []

    async def send(rows: list[list[Any]]) -> None:
        sent.append((trio.current_time(), len(rows)))

    with trio.move_on_after(SHIP_INTERVAL * 1.5):
        await ship_spans(tracer, send)
    # The full batches at once, the rest at the interval.
    assert sent == [(0.0, BATCH), (0.0, BATCH), (SHIP_INTERVAL, 10)]


async def test_a_busy_sidecar_sends_full_batches_as_they_fill_and_holds_about_one(
    autojump_clock: Any,
) -> None:
    """At 4 000 spans a second a batch fills every 0.13 s: it goes then, not at the
    interval (which would hold 2 000 spans), and spans that finish during its send wait
    for the next full batch instead of going in a small one of their own."""
    tracer = Tracer()
    batches: list[int] = []
    most_waiting = 0

    async def send(rows: list[list[Any]]) -> None:
        await trio.sleep(0.005)
        batches.append(len(rows))

    async def busy() -> None:
        nonlocal most_waiting
        for _ in range(8000):
            finish_one(tracer)
            most_waiting = max(most_waiting, len(tracer))
            await trio.sleep(1 / 4000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ship_spans, tracer, send)
        await busy()
        await trio.sleep(SHIP_INTERVAL * 2)
        nursery.cancel_scope.cancel()
    assert sum(batches) == 8000
    # Full batches, and at each interval the one that had begun to fill.
    assert len(batches) <= 8000 // BATCH + 2 / SHIP_INTERVAL + 2, batches
    assert batches.count(BATCH) >= 8000 // BATCH - 2 / SHIP_INTERVAL - 1, batches
    assert most_waiting <= BATCH + 4000 * 0.005 + 1, most_waiting


async def test_a_failed_send_drops_its_batch_and_waits_for_the_next_interval(
    autojump_clock: Any,
) -> None:
    tracer = Tracer()
    for _ in range(BATCH + 1):
        finish_one(tracer)
    attempts: list[float] = []

    async def send(rows: list[list[Any]]) -> None:
        attempts.append(trio.current_time())
        raise ControlPlaneError("control plane is gone")

    with trio.move_on_after(SHIP_INTERVAL * 2.5):
        await ship_spans(tracer, send)
    assert tracer.dropped == BATCH + 1 and tracer.shipped == 0
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= SHIP_INTERVAL


async def test_the_otlp_export_posts_once_per_interval_under_steady_load(
    autojump_clock: Any, monkeypatch: Any
) -> None:
    """The control plane's OTLP export batches the same way (the collector is slow)."""
    from meshkit.observe import otlp

    posts: list[int] = []

    async def post(url: str, body: bytes, content_type: str) -> int:
        await trio.sleep(0.005)
        posts.append(len(body))
        return 200

    monkeypatch.setattr(otlp, "post", post)
    exporter = otlp.OtlpExporter("http://127.0.0.1:4318/v1/traces")
    tracer = Tracer()

    async def offer() -> None:
        for _ in range(2000):
            finish_one(tracer)
            exporter.offer(tracer.take_batch())
            await trio.sleep(1 / 400)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(exporter.run)
        await offer()
        await trio.sleep(otlp.INTERVAL * 2)
        nursery.cancel_scope.cancel()
    assert exporter.exported == 2000
    assert len(posts) <= 5.0 / otlp.INTERVAL + 2, len(posts)
