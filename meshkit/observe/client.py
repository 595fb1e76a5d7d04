"""Reading the running mesh's observe server from the same directory (CLI, pytest handle).

The address comes from ``.meshkit/run/observe.json`` and the token from
``.meshkit/run/observe.token``, both readable by the mesh's user only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs

from meshkit.api.access import read_token
from meshkit.observe.server import read_address

RUN_DIR = Path(".meshkit") / "run"


class ObserveUnavailable(Exception):
    """No mesh with an observe server runs from this directory."""


def observe_base(run_dir: Path = RUN_DIR) -> tuple[str, str]:
    """``(base url, token)`` of the observe server of the mesh whose run directory this is."""
    address = read_address(run_dir)
    token = read_token(run_dir)
    if address is None or token is None or not isinstance(address.get("url"), str):
        raise ObserveUnavailable(
            f"no mesh is running from here (no {run_dir / 'observe.json'}); start one with 'meshkit up'"
        )
    return str(address["url"]), token


def observe_json(path: str, *, run_dir: Path = RUN_DIR, timeout: float = 10.0) -> tuple[int, Any]:
    """``(status, decoded JSON)`` of ``GET path`` on the observe server."""
    base, token = observe_base(run_dir)
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        with error:
            body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"error": body.decode("utf-8", "replace").strip()}
    except (OSError, ValueError) as error:
        raise ObserveUnavailable(
            f"the mesh's observe server at {base} did not answer: {error}"
        ) from None


@attrs.frozen(kw_only=True)
class Edge:
    """Traffic that flowed from one service (and version) to another, since the mesh started.

    ``source`` and ``target`` are node names as the dashboard shows them
    (``frontend``, ``catalog v2``; a target without a version is a request the
    mesh answered before choosing one).  ``error_share`` is the share of 5xx,
    latencies are milliseconds (None before the first request), ``mtls`` is
    ``mutual_tls``, ``none`` or ``unknown``, ``flags`` counts response flags.
    """

    source: str
    target: str
    requests: int
    error_share: float
    p50_ms: float | None
    p99_ms: float | None
    mtls: str
    flags: dict[str, int]


def read_traffic(run_dir: Path = RUN_DIR) -> list[Edge]:
    """The service graph's edges now (``GET /api/graph``)."""
    status, document = observe_json("/api/graph", run_dir=run_dir)
    if status != 200:
        raise ObserveUnavailable(f"the service graph answered {status}: {document}")
    return [
        Edge(
            source=edge["source"],
            target=edge["target"],
            requests=edge["requests"],
            error_share=edge["error_share"],
            p50_ms=edge["p50_ms"],
            p99_ms=edge["p99_ms"],
            mtls=edge["mtls"],
            flags=dict(edge["flags"]),
        )
        for edge in document["edges"]
    ]


def _span_count(nodes: list[Any]) -> int:
    return sum(1 + _span_count(node["children"]) for node in nodes)


def read_trace(
    trace_or_request_id: str, *, run_dir: Path = RUN_DIR, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The trace's spans as trees (``SpanNode.to_dict``), once no more arrive for a while.

    Sidecars ship spans twice a second, so this waits until the trace is found
    and its span count has held still over a second (at most ``timeout``).
    """
    path = f"/api/traces/{quote(trace_or_request_id, safe='')}"
    deadline = time.monotonic() + timeout
    seen, steady_since = -1, time.monotonic()
    roots: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        status, document = observe_json(path, run_dir=run_dir)
        count = _span_count(document["spans"]) if status == 200 else 0
        if count != seen:
            seen, steady_since = count, time.monotonic()
            roots = document.get("spans", []) if status == 200 else []
        elif count and time.monotonic() - steady_since >= 1.0:
            return roots
        time.sleep(0.2)
    if not roots:
        raise ObserveUnavailable(f"no trace or request '{trace_or_request_id}' within {timeout:g}s")
    return roots
