"""The sidecar's counters and their Prometheus text rendering (pure).

meshkit's own counters (by listener and cluster) and Istio's standard request
metrics (``istio``), all served on the admin listener's ``/metrics``.
"""

from __future__ import annotations

from collections import Counter

from meshkit.proxy.config import Endpoint, ProxyConfig
from meshkit.proxy.telemetry.istio import EdgeLabels, IstioMetrics, request_protocol
from meshkit.proxy.telemetry.spans import Tracer


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counts by listener/cluster/status class, connect failures, live connections."""

    def __init__(self, *, tracer: Tracer | None = None) -> None:
        self._tracer = tracer
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.connect_failures: Counter[str] = Counter()
        self.active_connections: Counter[str] = Counter()
        self.istio = IstioMetrics()
        self._edges = EdgeLabels()

    def record_request(self, *, listener: str, cluster: str, status: int) -> None:
        self.requests[(listener, cluster, _status_class(status))] += 1

    def record_istio(
        self,
        config: ProxyConfig,
        *,
        kind: str,
        peer: str | None,
        cluster: str,
        upstream: Endpoint | None,
        content_type: bytes | None,
        status: int,
        flag: str,
        duration_ms: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """Count one finished request in Istio's metrics (labels: see ``istio``)."""
        protocol = request_protocol(content_type)
        self.istio.record(
            self._edges.of(config, kind=kind, peer=peer, cluster=cluster, upstream=upstream),
            protocol=protocol,
            status=status,
            # A gRPC status travels in trailers, which this count does not read.
            grpc_status="" if protocol == "http" else "unknown",
            flag=flag,
            duration_ms=duration_ms,
            request_bytes=request_bytes,
            response_bytes=response_bytes,
        )

    def record_connect_failure(self, *, cluster: str) -> None:
        self.connect_failures[cluster] += 1

    def connection_opened(self, listener: str) -> None:
        self.active_connections[listener] += 1

    def connection_closed(self, listener: str) -> None:
        self.active_connections[listener] -= 1

    def render(self) -> str:
        """Prometheus text exposition format, version 0.0.4."""
        lines = [
            "# HELP meshkit_requests_total Requests answered, by listener, cluster and status class.",
            "# TYPE meshkit_requests_total counter",
        ]
        for (listener, cluster, status_class), count in sorted(self.requests.items()):
            lines.append(
                f'meshkit_requests_total{{listener="{_escape(listener)}",'
                f'cluster="{_escape(cluster)}",status_class="{status_class}"}} {count}'
            )
        lines += [
            "# HELP meshkit_upstream_connect_failures_total Failed connects to an endpoint, by cluster.",
            "# TYPE meshkit_upstream_connect_failures_total counter",
        ]
        for cluster, count in sorted(self.connect_failures.items()):
            lines.append(
                f'meshkit_upstream_connect_failures_total{{cluster="{_escape(cluster)}"}} {count}'
            )
        lines += [
            "# HELP meshkit_active_connections Open downstream connections, by listener.",
            "# TYPE meshkit_active_connections gauge",
        ]
        for listener, count in sorted(self.active_connections.items()):
            lines.append(f'meshkit_active_connections{{listener="{_escape(listener)}"}} {count}')
        if self._tracer is not None:
            lines += [
                "# HELP meshkit_spans_dropped_total Spans dropped: buffer full or control plane away.",
                "# TYPE meshkit_spans_dropped_total counter",
                f"meshkit_spans_dropped_total {self._tracer.dropped}",
                "# HELP meshkit_spans_shipped_total Spans the control plane received.",
                "# TYPE meshkit_spans_shipped_total counter",
                f"meshkit_spans_shipped_total {self._tracer.shipped}",
            ]
        lines += self.istio.render_lines()
        return "\n".join(lines) + "\n"
