"""The service graph from the traffic that really flowed (pure).

Input: the mesh's federated exposition (``meshkit.observe.federate``).
Edges come from Istio's metrics as the callers' sidecars counted them
(``reporter="source"``: these include the answers the mesh gave itself, such
as ``UH`` or an injected ``FI``); whether a hop was mTLS comes from the
callees' sidecars (``reporter="destination"``, ``connection_security_policy``).
Nodes are services and versions.  ``GraphTracker`` keeps the previous
counts to turn totals into a rate over the time between two looks.

Latency quantiles are read from the duration histogram as Prometheus'
``histogram_quantile`` does: linear inside the bucket that holds the rank.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import attrs

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
EdgeKey = tuple[str, str, str]  # (source node, destination service, destination version)


def parse_samples(text: str, names: frozenset[str]) -> list[tuple[str, dict[str, str], float]]:
    """``(metric, labels, value)`` of every sample of a metric in ``names``."""
    samples = []
    for line in text.splitlines():
        if not line or line[0] == "#" or line.split("{", 1)[0] not in names:
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = {
            key: value.replace('\\"', '"').replace("\\\\", "\\")
            for key, value in _LABEL.findall(match[2])
        }
        try:
            samples.append((match[1], labels, float(match[3])))
        except ValueError:
            continue
    return samples


def node_name(service: str, version: str) -> str:
    return service if version in ("", "unknown") else f"{service} {version}"


@attrs.define
class _Edge:
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = attrs.field(factory=dict)
    mtls: set[str] = attrs.field(factory=set)
    flags: dict[str, float] = attrs.field(factory=dict)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (upper bound -> count), or None if empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


def _edges(text: str) -> dict[EdgeKey, _Edge]:
    names = frozenset({"istio_requests_total", "istio_request_duration_milliseconds_bucket"})
    edges: dict[EdgeKey, _Edge] = {}
    # The callee knows the caller's app, not its version: mTLS is matched by app.
    security: dict[EdgeKey, set[str]] = {}
    for metric, labels, value in parse_samples(text, names):
        app = labels.get("source_app", "unknown")
        service = labels.get("destination_service_name", "unknown")
        version = labels.get("destination_version", "")
        if labels.get("reporter") == "destination":
            policy = labels.get("connection_security_policy", "unknown")
            security.setdefault((app, service, version), set()).add(policy)
            continue
        key = (node_name(app, labels.get("source_version", "")), service, version)
        edge = edges.setdefault(key, _Edge())
        if metric == "istio_requests_total":
            edge.requests += value
            if labels.get("response_code", "").startswith("5"):
                edge.errors += value
            flag = labels.get("response_flags", "-")
            if flag != "-":
                edge.flags[flag] = edge.flags.get(flag, 0.0) + value
        else:
            bound = float(labels.get("le", "+Inf").replace("+Inf", "inf"))
            edge.buckets[bound] = edge.buckets.get(bound, 0.0) + value
    for (source, service, version), edge in edges.items():
        edge.mtls = security.get((source.split(" ")[0], service, version), set())
    return edges


def _mtls_of(seen: set[str]) -> str:
    if not seen:
        return "unknown"
    return "mutual_tls" if seen == {"mutual_tls"} else "none"


class GraphTracker:
    """Turns successive expositions into the graph, with rates since the previous look."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._previous: tuple[float, dict[EdgeKey, float]] | None = None
        self._rates: dict[EdgeKey, float] = {}

    def graph(self, text: str) -> dict[str, Any]:
        now = self._clock()
        edges = {key: edge for key, edge in _edges(text).items() if edge.requests > 0}
        totals = {key: edge.requests for key, edge in edges.items()}
        if self._previous is not None and now - self._previous[0] >= 0.5:
            then, before = self._previous
            self._rates = {
                key: max(0.0, total - before.get(key, 0.0)) / (now - then)
                for key, total in totals.items()
            }
            self._previous = (now, totals)
        elif self._previous is None:
            self._previous = (now, totals)
        nodes: dict[str, dict[str, str]] = {}
        documents = []
        for (source, service, version), edge in sorted(edges.items()):
            target = node_name(service, version)
            nodes.setdefault(source, {"id": source, "service": source.split(" ")[0]})
            nodes.setdefault(target, {"id": target, "service": service})
            documents.append(
                {
                    "source": source,
                    "target": target,
                    "requests": int(edge.requests),
                    "rate": round(self._rates.get((source, service, version), 0.0), 2),
                    "error_share": round(edge.errors / edge.requests, 4),
                    "p50_ms": _rounded(quantile(0.5, edge.buckets)),
                    "p99_ms": _rounded(quantile(0.99, edge.buckets)),
                    "mtls": _mtls_of(edge.mtls),
                    "flags": {flag: int(count) for flag, count in sorted(edge.flags.items())},
                }
            )
        return {"nodes": sorted(nodes.values(), key=lambda node: node["id"]), "edges": documents}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
