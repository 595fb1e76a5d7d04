"""Export spans over OTLP/HTTP (protobuf), as an OpenTelemetry collector takes them.

``encode_spans`` writes an ``ExportTraceServiceRequest`` of the OTLP trace
schema (opentelemetry-proto, ``collector/trace/v1``) by hand: the handful of
fields meshkit fills, in protobuf's wire format, so the control plane needs
no protobuf runtime.  One ``ResourceSpans`` per sidecar instance
(``service.name``, ``service.instance.id``), spans named ``METHOD /path``,
kind CLIENT or SERVER, HTTP attributes of the semantic conventions, status
ERROR for a 5xx (and a 4xx on a client span).

``OtlpExporter`` queues what the span store receives (bounded; overflow is
dropped and counted) and posts it to ``<url>`` (``http://host:port/v1/traces``)
every second from its own task, so a slow or absent collector never holds
the control plane up.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Iterable
from urllib.parse import urlsplit

import trio

from meshkit.observe.http import post
from meshkit.proxy.telemetry.tracing import Span

SCOPE_NAME = "meshkit"
QUEUE_LIMIT = 10_000
BATCH = 512
INTERVAL = 1.0
SPAN_KIND = {"server": 2, "client": 3}
STATUS_OK, STATUS_ERROR = 1, 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _string_field(number: int, text: str) -> bytes:
    return _bytes_field(number, text.encode())


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _fixed64_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<Q", value)


def _attribute(key: str, value: str | int) -> bytes:
    # AnyValue: string_value = 1, int_value = 3.
    any_value = _string_field(1, value) if isinstance(value, str) else _varint_field(3, value)
    return _string_field(1, key) + _bytes_field(2, any_value)


def _is_error(span: Span) -> bool:
    return span.status >= 500 or (span.kind == "client" and span.status >= 400)


def encode_span(span: Span) -> bytes:
    start = int(span.start * 1e9)
    end = start + int(span.duration_ms * 1e6)
    attributes = [
        _attribute("http.request.method", span.method),
        _attribute("url.path", span.route),
        _attribute("http.response.status_code", span.status),
        _attribute("meshkit.upstream", span.upstream),
        _attribute("meshkit.response_flags", span.flag),
        _attribute("meshkit.request_id", span.request_id),
    ]
    data = _bytes_field(1, bytes.fromhex(span.trace_id)) + _bytes_field(
        2, bytes.fromhex(span.span_id)
    )
    if span.parent_id is not None:
        data += _bytes_field(4, bytes.fromhex(span.parent_id))
    data += _string_field(5, f"{span.method} {span.route}")
    data += _varint_field(6, SPAN_KIND[span.kind])
    data += _fixed64_field(7, start) + _fixed64_field(8, end)
    data += b"".join(_bytes_field(9, attribute) for attribute in attributes)
    status = _varint_field(3, STATUS_ERROR if _is_error(span) else STATUS_OK)
    if span.flag != "-":
        status = _string_field(2, f"response flags {span.flag}") + status
    return data + _bytes_field(15, status)


def encode_spans(spans: Iterable[Span]) -> bytes:
    """An ``ExportTraceServiceRequest`` holding ``spans``, grouped by instance."""
    by_instance: dict[tuple[str, str], list[Span]] = {}
    for span in spans:
        by_instance.setdefault((span.service, span.instance), []).append(span)
    request = b""
    for (service, instance), group in by_instance.items():
        resource = _bytes_field(1, _attribute("service.name", service)) + _bytes_field(
            1, _attribute("service.instance.id", instance)
        )
        scope = _string_field(1, SCOPE_NAME)
        scope_spans = _bytes_field(1, scope) + b"".join(
            _bytes_field(2, encode_span(span)) for span in group
        )
        resource_spans = _bytes_field(1, resource) + _bytes_field(2, scope_spans)
        request += _bytes_field(1, resource_spans)
    return request


def check_otlp_url(url: str) -> None:
    """Raise ``ValueError`` saying why ``url`` is no OTLP/HTTP endpoint meshkit can post to."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--otlp needs an http://host:port/v1/traces URL, not {url!r}")


class OtlpExporter:
    def __init__(self, url: str, *, queue_limit: int = QUEUE_LIMIT) -> None:
        check_otlp_url(url)
        self.url = url
        self._queue: collections.deque[Span] = collections.deque()
        self._queue_limit = queue_limit
        self.exported = 0
        self.dropped = 0
        self.last_error: str | None = None

    def offer(self, spans: list[Span]) -> None:
        room = max(0, self._queue_limit - len(self._queue))
        self._queue.extend(spans[:room])
        self.dropped += len(spans) - min(room, len(spans))

    async def run(self, *, interval: float = INTERVAL) -> None:
        """Post the queued spans every ``interval`` seconds until cancelled, in batches of
        ``BATCH``; the batch that is not full is the interval's last (spans offered during
        a post wait for the next interval, not for a post of their own)."""
        while True:
            await trio.sleep(interval)
            full = True
            while full and self._queue:
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                full = len(batch) == BATCH
                status = await post(self.url, encode_spans(batch), "application/x-protobuf")
                if status is not None and 200 <= status < 300:
                    self.exported += len(batch)
                    self.last_error = None
                else:
                    self.dropped += len(batch)
                    self.last_error = f"{self.url} answered {status or 'nothing'}"
                    break
