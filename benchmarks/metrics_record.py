"""The hot-path cost of telemetry per request: Istio's four metrics (hand-written vs
prometheus_client) and one span (opened, continued in the headers, finished).

    python benchmarks/metrics_record.py [--calls 200000]

Prints microseconds per record for ``meshkit.proxy.telemetry.metrics`` (the
labels computed from config and peer as a sidecar does per request) and, when
the ``prometheus_client`` package is installed, for the same four metrics and
fourteen labels through it.  A sidecar's whole budget per request is ~400 µs.
"""

from __future__ import annotations

import argparse
import timeit

from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.config import Endpoint, ProxyConfig
from meshkit.proxy.telemetry.istio import BYTES_BUCKETS, DURATION_BUCKETS_MS, LABEL_NAMES
from meshkit.proxy.telemetry.metrics import Metrics
from meshkit.proxy.telemetry.spans import Tracer

CONFIG = ProxyConfig(
    version=3,
    mesh="shop",
    instance="frontend-0",
    service="frontend",
    identity="spiffe://meshkit.local/ns/shop/sa/frontend",
)
ENDPOINT = Endpoint(
    instance="catalog-v1-0",
    host="127.0.0.1",
    port=4000,
    version="v1",
    identity="spiffe://meshkit.local/ns/shop/sa/catalog",
)


def meshkit_record(metrics: Metrics) -> None:
    metrics.record_istio(
        CONFIG,
        kind="outbound",
        peer=None,
        cluster="catalog",
        upstream=ENDPOINT,
        content_type=b"application/json",
        status=200,
        flag="-",
        duration_ms=1.3,
        request_bytes=0,
        response_bytes=1100,
    )


def prometheus_client_record(calls: int) -> float | None:
    try:
        from prometheus_client import CollectorRegistry, Counter, Histogram
    except ImportError:
        return None
    registry = CollectorRegistry()
    requests = Counter("istio_requests", "", LABEL_NAMES, registry=registry)
    duration = Histogram(
        "istio_request_duration_milliseconds",
        "",
        LABEL_NAMES,
        buckets=DURATION_BUCKETS_MS,
        registry=registry,
    )
    request_bytes = Histogram(
        "istio_request_bytes", "", LABEL_NAMES, buckets=BYTES_BUCKETS, registry=registry
    )
    response_bytes = Histogram(
        "istio_response_bytes", "", LABEL_NAMES, buckets=BYTES_BUCKETS, registry=registry
    )
    values = ("source", "frontend", "frontend", "unknown", CONFIG.identity, "catalog")
    values += ("catalog-v1", "v1", str(ENDPOINT.identity), "unknown", "http", "200", "", "-")

    def record() -> None:
        requests.labels(*values).inc()
        duration.labels(*values).observe(1.3)
        request_bytes.labels(*values).observe(0)
        response_bytes.labels(*values).observe(1100)

    return timeit.timeit(record, number=calls) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    metrics = Metrics()
    per_call = timeit.timeit(lambda: meshkit_record(metrics), number=calls) / calls * 1e6
    print(f"meshkit.proxy.telemetry.metrics: {per_call:.2f} µs per request")
    tracer = Tracer(capacity=calls + 1)
    head = RequestHead(
        method=b"GET",
        target=b"/items",
        headers=[
            (b"host", b"catalog"),
            (b"accept", b"*/*"),
            (b"x-request-id", b"abc"),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ],
        http_version=b"1.1",
    )

    def one_span() -> None:
        span, _ = tracer.begin(head, kind="client")
        tracer.finish(
            span, service="frontend", instance="frontend-0", method=b"GET", target=b"/items",
            upstream="catalog-v1-0", status=200, flag="-", duration_ms=1.3,
        )  # fmt: skip

    per_span = timeit.timeit(one_span, number=calls) / calls * 1e6
    print(f"one span (begin + finish):       {per_span:.2f} µs per request")
    other = prometheus_client_record(calls)
    if other is None:
        print("prometheus_client: not installed")
    else:
        print(f"prometheus_client:               {other:.2f} µs per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
