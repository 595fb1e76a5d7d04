"""The sidecar's counters and their Prometheus text rendering (pure)."""

from __future__ import annotations

from collections import Counter


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counts by listener/cluster/status class, connect failures, live connections."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.connect_failures: Counter[str] = Counter()
        self.active_connections: Counter[str] = Counter()

    def record_request(self, *, listener: str, cluster: str, status: int) -> None:
        self.requests[(listener, cluster, _status_class(status))] += 1

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
        return "\n".join(lines) + "\n"
