"""Each policy feature of a Meshfile (and the gateway), and the Istio fields it must produce.

Cases as in ``test_export_routing``: a snippet after its header, the object,
the path inside it and the value expected there; every object is validated.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests.unit.test_export_routing import HEADER, NO_RETRIES, dig, export_snippet, find

# (id, snippet, (kind, name), path, expected)
CASES: list[tuple[str, str, tuple[str, str], tuple[Any, ...], Any]] = [
    (
        "subsets per version",
        "",
        ("DestinationRule", "catalog"),
        ("spec", "subsets"),
        [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
        ],
    ),
    (
        "load balancer",
        'mesh.policy("catalog", load_balancer="least_request")',
        ("DestinationRule", "catalog"),
        ("spec", "trafficPolicy", "loadBalancer"),
        {"simple": "LEAST_REQUEST"},
    ),
    (
        "breaker as connection pool",
        'mesh.policy("catalog", breaker=breaker(max_connections=10, '
        "max_requests=30, max_retries=2))",
        ("DestinationRule", "catalog"),
        ("spec", "trafficPolicy", "connectionPool"),
        {
            "tcp": {"maxConnections": 10},
            "http": {"http2MaxRequests": 30, "maxRetries": 2},
        },
    ),
    (
        "outlier detection",
        'mesh.policy("catalog", outlier=outlier(consecutive_errors=3, base_ejection="10s", '
        "max_ejection_percent=20))",
        ("DestinationRule", "catalog"),
        ("spec", "trafficPolicy", "outlierDetection"),
        {"consecutive5xxErrors": 3, "baseEjectionTime": "10s", "maxEjectionPercent": 20},
    ),
    (
        "meshkit's defaults for a service without mesh.policy",
        "",
        ("DestinationRule", "frontend"),
        ("spec", "trafficPolicy"),
        {
            "loadBalancer": {"simple": "ROUND_ROBIN"},
            "connectionPool": {
                "tcp": {"maxConnections": 1024},
                "http": {"http2MaxRequests": 1024, "maxRetries": 3},
            },
            "outlierDetection": {
                "consecutive5xxErrors": 5,
                "baseEjectionTime": "30s",
                "maxEjectionPercent": 50,
            },
        },
    ),
    (
        "retry budget",
        'mesh.policy("catalog", retry_budget=retry_budget(percent=25, min_per_second=5))',
        ("DestinationRule", "catalog"),
        ("spec", "trafficPolicy", "retryBudget"),
        {"percent": 25.0, "minRetryConcurrency": 5},
    ),
    (
        "mTLS strict by default",
        "",
        ("PeerAuthentication", "default"),
        ("spec",),
        {"mtls": {"mode": "STRICT"}},
    ),
    (
        "a service without mesh.route keeps meshkit's timeout and no retries",
        "",
        ("VirtualService", "frontend"),
        ("spec",),
        {
            "hosts": ["frontend"],
            "http": [
                {
                    "name": "default",
                    "route": [{"destination": {"host": "frontend"}}],
                    "timeout": "15s",
                    "retries": NO_RETRIES,
                }
            ],
        },
    ),
    (
        "gateway: longest prefix first, the service's rules narrowed to its prefix",
        'mesh.route("catalog", match(path="/api/ping").respond(200, "pong"), '
        'match(path="/elsewhere").respond(404))\n'
        'mesh.gateway(port=8080, routes={"/": "frontend", "/api/": "catalog"})',
        ("VirtualService", "shop-gateway"),
        ("spec",),
        {
            "hosts": ["*"],
            "gateways": ["shop-gateway"],
            "http": [
                {
                    "name": "catalog-rule-1",
                    "match": [{"uri": {"exact": "/api/ping"}}],
                    "directResponse": {"status": 200, "body": {"string": "pong"}},
                },
                {
                    "name": "catalog-default",
                    "match": [{"uri": {"prefix": "/api/"}}],
                    "route": [{"destination": {"host": "catalog"}}],
                    "timeout": "15s",
                    "retries": NO_RETRIES,
                },
                {
                    "name": "frontend-default",
                    "match": [{"uri": {"prefix": "/"}}],
                    "route": [{"destination": {"host": "frontend"}}],
                    "timeout": "15s",
                    "retries": NO_RETRIES,
                },
            ],
        },
    ),
    (
        "gateway servers",
        'mesh.gateway(port=8080, tls_port=8443, routes={"/": "frontend"})',
        ("Gateway", "shop-gateway"),
        ("spec",),
        {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["*"],
                    "tls": {"mode": "SIMPLE", "credentialName": "shop-gateway-cert"},
                },
            ],
        },
    ),
]


@pytest.mark.parametrize(
    ("snippet", "target", "path", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_feature_produces_istio_fields(
    tmp_path: pathlib.Path,
    snippet: str,
    target: tuple[str, str],
    path: tuple[Any, ...],
    expected: Any,
) -> None:
    exported = export_snippet(tmp_path, snippet)
    assert dig(find(exported, *target), path) == expected


def test_permissive_mtls(tmp_path: pathlib.Path) -> None:
    header = HEADER.replace("Mesh('shop')", "Mesh('shop', mtls='permissive')")
    exported = export_snippet(tmp_path, "", header=header)
    assert find(exported, "PeerAuthentication", "default")["spec"] == {
        "mtls": {"mode": "PERMISSIVE"}
    }
