"""Istio's standard metrics in a sidecar: labels from config and identities, buckets, text."""

from __future__ import annotations

from meshkit.proxy.config import Endpoint, ProxyConfig
from meshkit.proxy.telemetry.istio import (
    DURATION_BUCKETS_MS,
    LABEL_NAMES,
    request_protocol,
    service_of_principal,
)
from meshkit.proxy.telemetry.metrics import Metrics

FRONTEND = ProxyConfig(
    version=1,
    mesh="shop",
    instance="frontend-0",
    service="frontend",
    identity="spiffe://meshkit.local/ns/shop/sa/frontend",
)
CATALOG_V2 = ProxyConfig(
    version=1,
    mesh="shop",
    instance="catalog-v2-0",
    service="catalog",
    service_version="v2",
    identity="spiffe://meshkit.local/ns/shop/sa/catalog",
)
ENDPOINT = Endpoint(
    instance="catalog-v2-0",
    host="127.0.0.1",
    port=4000,
    version="v2",
    identity="spiffe://meshkit.local/ns/shop/sa/catalog",
)


def _record(metrics: Metrics, config: ProxyConfig, **overrides: object) -> None:
    arguments: dict[str, object] = {
        "kind": "outbound",
        "peer": None,
        "cluster": "catalog",
        "upstream": ENDPOINT,
        "content_type": None,
        "status": 200,
        "flag": "-",
        "duration_ms": 3.0,
        "request_bytes": 0,
        "response_bytes": 1100,
    }
    arguments.update(overrides)
    metrics.record_istio(config, **arguments)  # type: ignore[arg-type]


def _labels(key: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(LABEL_NAMES, key, strict=True))


def test_the_caller_reports_as_source_with_the_endpoints_verified_identity() -> None:
    metrics = Metrics()
    _record(metrics, FRONTEND)
    _record(metrics, FRONTEND)
    [(key, count)] = metrics.istio.requests().items()
    assert count == 2
    assert _labels(key) == {
        "reporter": "source",
        "source_workload": "frontend",
        "source_app": "frontend",
        "source_version": "unknown",
        "source_principal": "spiffe://meshkit.local/ns/shop/sa/frontend",
        "destination_service_name": "catalog",
        "destination_workload": "catalog-v2",
        "destination_version": "v2",
        "destination_principal": "spiffe://meshkit.local/ns/shop/sa/catalog",
        "connection_security_policy": "unknown",
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
    }


def test_the_callee_reports_as_destination_with_the_callers_certificate() -> None:
    metrics = Metrics()
    _record(
        metrics,
        CATALOG_V2,
        kind="inbound",
        peer="spiffe://meshkit.local/ns/shop/sa/frontend",
        upstream=None,
        content_type=b"application/grpc+proto",
        status=503,
        flag="UF",
    )
    [key] = metrics.istio.requests()
    labels = _labels(key)
    assert labels["reporter"] == "destination"
    assert labels["source_app"] == "frontend"
    assert labels["source_principal"] == "spiffe://meshkit.local/ns/shop/sa/frontend"
    assert labels["destination_workload"] == "catalog-v2"
    assert labels["destination_version"] == "v2"
    assert labels["connection_security_policy"] == "mutual_tls"
    assert labels["request_protocol"] == "grpc"
    assert labels["response_code"] == "503"
    assert labels["response_flags"] == "UF"


def test_plaintext_callers_and_mesh_answers_are_unknown_not_guessed() -> None:
    metrics = Metrics()
    _record(metrics, CATALOG_V2, kind="inbound", peer=None, upstream=None)
    _record(metrics, FRONTEND, upstream=None, status=503, flag="UH")
    by_reporter = {_labels(key)["reporter"]: _labels(key) for key in metrics.istio.requests()}
    assert by_reporter["destination"]["source_principal"] == "unknown"
    assert by_reporter["destination"]["connection_security_policy"] == "none"
    assert by_reporter["source"]["destination_workload"] == "catalog"
    assert by_reporter["source"]["destination_version"] == "unknown"


def test_service_of_principal_reads_only_meshkit_ids() -> None:
    assert service_of_principal("spiffe://meshkit.local/ns/shop/sa/reviews") == "reviews"
    assert service_of_principal("https://x/sa/evil") == "unknown"
    assert service_of_principal(None) == "unknown"
    assert request_protocol(b"application/grpc") == "grpc"
    assert request_protocol(b"text/html") == "http"


def test_histograms_render_cumulative_istio_buckets() -> None:
    metrics = Metrics()
    _record(metrics, FRONTEND, duration_ms=0.2, response_bytes=5)
    _record(metrics, FRONTEND, duration_ms=7.0, response_bytes=5000)
    _record(metrics, FRONTEND, duration_ms=99999999.0, request_bytes=10**12)
    text = metrics.render()
    assert "# TYPE istio_requests_total counter" in text
    assert "# TYPE istio_request_duration_milliseconds histogram" in text
    lines = [line for line in text.splitlines() if line.startswith("istio_request_duration")]
    buckets = [line for line in lines if "_bucket" in line]
    assert len(buckets) == len(DURATION_BUCKETS_MS) + 1
    assert buckets[0].endswith('le="0.5"} 1')
    assert any(line.endswith('le="10"} 2') for line in buckets)
    assert buckets[-2].endswith('le="3600000"} 2')
    assert buckets[-1].endswith('le="+Inf"} 3')
    assert any(
        line.startswith("istio_request_duration_milliseconds_count{") and line.endswith(" 3")
        for line in lines
    )
    assert any(
        "istio_response_bytes_bucket{" in line and 'le="10"} 1' in line
        for line in text.splitlines()
    )
    assert "istio_request_bytes_bucket{" in text
    assert 'destination_service_name="catalog"' in text
    assert 'istio_requests_total{reporter="source",' in text
