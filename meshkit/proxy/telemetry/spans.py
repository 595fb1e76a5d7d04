"""A sidecar's spans: opened and finished per request, shipped to the control plane in batches.

``Tracer.begin`` opens the span of a request as it arrives (and gives the
request the headers of the next hop, ``tracing.begin_span``);
``Tracer.finish`` records it once answered into a bounded buffer, an append
and nothing else on the request's path.  ``ship_spans`` runs beside the
listeners and posts what the buffer holds to the control API
(``ControlClient.send_spans``: ``POST /v1/instances/<instance>/spans``) as soon
as ``BATCH`` spans wait and every ``interval`` seconds, at most ``BATCH`` spans
a request, each span a row of its values in ``SPAN_FIELDS`` order (no per-span
dict or field names on the wire; ``observe.spans.spans_from_rows`` checks them
a column at a time).  A full
buffer or a control plane that does not answer in time drops spans, counted in
``meshkit_spans_dropped_total``: tracing never makes a request wait.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from meshkit.api.control import ControlPlaneError
from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.telemetry.tracing import SPAN_FIELDS, OpenSpan, Span, SpanKind, begin_span

CAPACITY = 4096
BATCH = 512
SHIP_INTERVAL = 0.5
SHIP_TIMEOUT = 2.0

# What ``finish`` keeps: the open span, service, instance, method, target, upstream,
# status, flag and duration.
_Finished = tuple[OpenSpan, str, str, bytes, bytes, str, int, str, float]
SendBatch = Callable[[list[list[Any]]], Awaitable[None]]


class Tracer:
    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._pending: collections.deque[_Finished] = collections.deque()
        self._capacity = capacity
        self._wall_clock = wall_clock
        self._rng = rng if rng is not None else random.Random()
        self.dropped = 0
        self.shipped = 0
        self._batch_waiter: trio.Event | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def begin(self, head: RequestHead, *, kind: SpanKind) -> tuple[OpenSpan, RequestHead]:
        span, headers = begin_span(head.headers, kind=kind, start=self._wall_clock(), rng=self._rng)
        return span, RequestHead(
            method=head.method, target=head.target, headers=headers, http_version=head.http_version
        )

    def finish(
        self,
        span: OpenSpan,
        *,
        service: str,
        instance: str,
        method: bytes,
        target: bytes,
        upstream: str,
        status: int,
        flag: str,
        duration_ms: float,
    ) -> None:
        if len(self._pending) >= self._capacity:
            self.dropped += 1
            return
        # Only a tuple on the request's path; the Span is built when shipped.
        self._pending.append(
            (span, service, instance, method, target, upstream, status, flag, duration_ms)
        )
        if self._batch_waiter is not None and len(self._pending) >= BATCH:
            self._batch_waiter.set()

    async def wait_for_batch(self) -> None:
        """Return once ``BATCH`` finished spans are waiting to be shipped."""
        if len(self._pending) >= BATCH:
            return
        self._batch_waiter = waiter = trio.Event()
        try:
            await waiter.wait()
        finally:
            self._batch_waiter = None

    def take_batch(self, limit: int = BATCH) -> list[Span]:
        return [
            Span(**dict(zip(SPAN_FIELDS, row, strict=True))) for row in self.take_shippable(limit)
        ]

    def take_shippable(self, limit: int = BATCH) -> list[list[Any]]:
        """Up to ``limit`` finished spans as rows of their values in ``SPAN_FIELDS`` order
        (the values of ``Span.to_dict``), oldest first; built straight from what ``finish``
        kept, without a ``Span`` or a dict each."""
        batch: list[list[Any]] = []
        pending = self._pending
        routes: dict[bytes, str] = {}
        methods: dict[bytes, str] = {}
        for _ in range(min(limit, len(pending))):
            span, service, instance, method, target, upstream, status, flag, duration_ms = (
                pending.popleft()
            )
            route = routes.get(target)
            if route is None:
                route = routes[target] = _path_of(target)
            name = methods.get(method)
            if name is None:
                name = methods[method] = method.decode("ascii", "replace")
            batch.append(
                [
                    span.trace_id, span.span_id, span.parent_id, span.kind, service, instance,
                    name, route, upstream, status, flag, span.start, round(duration_ms, 3),
                    span.request_id,
                ]
            )  # fmt: skip
        return batch


def _path_of(target: bytes) -> str:
    """The path of an origin-form or absolute-form target, without its query."""
    if target.startswith((b"http://", b"https://")):
        slash = target.find(b"/", target.index(b"//") + 2)
        target = b"/" if slash < 0 else target[slash:]
    return target.partition(b"?")[0].decode("ascii", "replace")


async def ship_spans(
    tracer: Tracer,
    send: SendBatch,
    *,
    interval: float = SHIP_INTERVAL,
    timeout: float = SHIP_TIMEOUT,
) -> None:
    """Send ``tracer``'s spans with ``send`` until cancelled: a batch as soon as ``BATCH``
    spans are waiting, and what is left every ``interval``; failed batches are dropped,
    and after a failure nothing is sent before the next interval.

    So a span waits at most ``interval`` (and the time its send takes), a busy sidecar
    holds at most about one batch, and it sends full batches: spans that finish while a
    send is under way wait for their batch to fill or for the interval.  (Sending
    whatever had come during the last send made a busy sidecar send one small batch after
    another as fast as the control plane answered, ~46 spans each at 2 000 requests a
    second; waiting for the interval alone held 0.5 s of spans, over a MiB, at saturation.)
    """
    flush_at = trio.current_time() + interval
    while True:
        with trio.move_on_at(flush_at):
            await tracer.wait_for_batch()
        due = trio.current_time() >= flush_at
        if due:
            flush_at = trio.current_time() + interval
        while (due or len(tracer) >= BATCH) and (batch := tracer.take_shippable()):
            sent = False
            with trio.move_on_after(timeout):
                try:
                    await send(batch)
                    sent = True
                except (ControlPlaneError, OSError, trio.BrokenResourceError):
                    sent = False
            if sent:
                tracer.shipped += len(batch)
            else:
                tracer.dropped += len(batch)
                await trio.sleep_until(flush_at)
                break
            due = False  # the rest of an interval's spans went in this batch
