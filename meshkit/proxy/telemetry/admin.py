"""The admin listener's answers: ``/ready``, ``/config``, ``/metrics``, ``/calls`` (pure)."""

from __future__ import annotations

import json

import attrs

from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.telemetry.calls import CallLog, answer_calls
from meshkit.proxy.telemetry.metrics import Metrics
from meshkit.proxy.wire import config_to_dict


@attrs.frozen(kw_only=True)
class AdminAnswer:
    status: int
    content_type: bytes
    body: bytes


def _text(status: int, text: str) -> AdminAnswer:
    return AdminAnswer(
        status=status, content_type=b"text/plain; charset=utf-8", body=(text + "\n").encode()
    )


def answer_admin(
    path: bytes,
    *,
    config: ProxyConfig | None,
    ready: bool,
    metrics: Metrics,
    calls: CallLog | None = None,
    method: bytes = b"GET",
    query: bytes = b"",
) -> AdminAnswer:
    """What the admin listener answers for ``method`` of ``path`` (``/calls``: see ``calls``)."""
    if path == b"/calls" and calls is not None:
        answer = answer_calls(method, query, calls)
        return AdminAnswer(status=answer.status, content_type=answer.content_type, body=answer.body)
    if path == b"/ready":
        return _text(200, "ready") if ready else _text(503, "not ready: no config applied yet")
    if path == b"/config":
        if config is None:
            return _text(503, "no config applied yet")
        document = {"version": config.version, "config": config_to_dict(config)}
        return AdminAnswer(
            status=200,
            content_type=b"application/json",
            body=json.dumps(document, indent=2).encode() + b"\n",
        )
    if path == b"/metrics":
        return AdminAnswer(
            status=200,
            content_type=b"text/plain; version=0.0.4; charset=utf-8",
            body=metrics.render().encode(),
        )
    shown = path.decode("ascii", "replace")
    return _text(404, f"no admin page '{shown}' (try /ready, /config, /metrics or /calls)")
