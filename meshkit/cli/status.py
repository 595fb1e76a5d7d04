"""``meshkit status [--json]``: the instances of the mesh running in this directory.

The CERT column shows each sidecar's certificate: ``valid`` and the time left,
``expired``, ``refused`` (the reason is in the errors), or ``-`` before it has one.

The SYNC column is each sidecar's config sync (``istioctl proxy-status``):
``SYNCED`` (it applied the newest config), ``STALE`` (not answered yet) or
``NACKED`` (it refused it; the reason is in the errors), with the version it
applied.  The ``reload`` line tells how the last Meshfile reload went and how
long it took from the detected change to the last sidecar's ACK.  A ``fault``
line shows each runtime fault in force (``meshkit fault``) and its time left.

Below the table, an instance with something to explain gets its lines: why
it was (re)started when something replaced it (``meshkit restart``, a
reload, a watched file), and for one that is not healthy and has exited,
its last exit status with the end of its log file (``.meshkit/logs/``).  An
app that listens elsewhere than on ``$PORT`` is named in the errors.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from meshkit.cli.control import ask
from meshkit.dsl.durations import format_duration

COLUMNS = (
    "SERVICE",
    "VERSION",
    "INSTANCE",
    "STATE",
    "PID",
    "SIDECAR",
    "RESTARTS",
    "PORT",
    "INBOUND",
    "AGE",
    "CERT",
    "SYNC",
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show the instances of the mesh running in this directory",
        description="Show every instance of the running mesh: state, pids, restarts, ports.",
    )
    parser.add_argument("--json", action="store_true", help="print the status document as JSON")


def format_age(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"


def format_certificate(instance: dict[str, Any], *, now: float) -> str:
    """``valid 11h59m``, ``expired``, ``refused`` or ``-`` for one instance of the status."""
    state = str(instance.get("cert_state") or "none")
    if state.startswith("refused"):
        return "refused"
    if state == "valid":
        expires = instance.get("cert_expires_at")
        left = None if expires is None else float(expires) - now
        return "valid" if left is None else f"valid {format_age(left)}"
    return "-" if state == "none" else state


def format_sync(entry: dict[str, Any]) -> str:
    """``SYNCED v4``, ``STALE v3``, ``NACKED v3`` (the applied version) or ``-``."""
    sync = entry.get("sync")
    if not sync:
        return "-"
    word = str(sync).split(":", 1)[0]
    applied = entry.get("applied_version")
    return word if applied is None else f"{word} v{applied}"


def format_reload(document: dict[str, Any]) -> str | None:
    """The ``reload`` line of the table, or None before the first reload."""
    report = document.get("reload") or {}
    if report.get("error") and not report.get("reloads"):
        return f"reload: refused: {report.get('error')}"
    if not report.get("reloads"):
        return None
    line = f"reload: {report.get('reloads')} applied, the last in {report.get('duration_ms')} ms"
    if report.get("summary"):
        line += f" ({report.get('summary')})"
    if report.get("error"):
        line += f"; now: {report.get('error')}"
    return line


def describe_fault(fault: dict[str, Any], *, now: float) -> str:
    """One runtime fault of the status document, for people: what, where, how long."""
    effects = []
    if fault.get("abort") is not None:
        effects.append(f"abort {fault['abort']}")
    if fault.get("delay") is not None:
        effects.append(f"delay {format_duration(float(fault['delay']))}")
    line = f"{fault.get('id')}: {fault.get('service')} {' + '.join(effects) or '-'}"
    line += f" on {float(fault.get('percent') or 0):g}% of requests"
    if fault.get("path_prefix"):
        line += f" under {fault['path_prefix']}"
    for name, value in (fault.get("headers") or {}).items():
        line += f" with {name}: {value}"
    expires = fault.get("expires_at")
    if expires is not None:
        line += f", {format_age(float(expires) - now)} left"
    return line


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def format_table(rows: list[list[str]]) -> list[str]:
    """``rows`` (the first is the heading) as lines of left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


TAIL_LINES = 5
HEALTHY = "healthy"


def explain_instance(instance: dict[str, Any]) -> list[str]:
    """The lines below the table for one instance: why it started, how it last ended."""
    lines = []
    name = instance.get("id")
    if instance.get("reason"):
        lines.append(f"{name}: started for {instance['reason']}")
    code = instance.get("exit_status")
    if code is not None and instance.get("state") != HEALTHY:
        tail = [str(line) for line in instance.get("log_tail") or []][-TAIL_LINES:]
        ending = f"{name}: last exit status {code}"
        log_file = instance.get("log_file")
        if tail and log_file:
            ending += f", the end of .meshkit/logs/{log_file}:"
        lines.append(ending)
        lines.extend(f"  | {line}" for line in tail)
    return lines


def format_status(document: dict[str, Any], *, now: float) -> str:
    """The human table of a ``/v1/status`` document."""
    state = "ready" if document.get("ready") else "not ready"
    lines = [f"mesh {document.get('mesh')!r} ({state}) from {document.get('file')}"]
    for gateway in document.get("gateways", []):
        urls = [gateway.get("url"), gateway.get("tls_url")]
        line = "gateway " + " ".join(str(url) for url in urls if url)
        if gateway.get("sync"):
            line += f"  config {format_sync(gateway)}"
        lines.append(line)
    reload_line = format_reload(document)
    if reload_line is not None:
        lines.append(reload_line)
    rows = [list(COLUMNS)]
    for service in document.get("services", []):
        for instance in service.get("instances", []):
            started = instance.get("started_at")
            rows.append(
                [
                    _cell(service.get("name")),
                    _cell(service.get("version")),
                    _cell(instance.get("id")),
                    _cell(instance.get("state")),
                    _cell(instance.get("pid")),
                    _cell(instance.get("sidecar_pid")),
                    _cell(instance.get("restarts")),
                    _cell(instance.get("port")),
                    _cell(instance.get("inbound_port")),
                    format_age(None if started is None else now - float(started)),
                    format_certificate(instance, now=now),
                    format_sync(instance),
                ]
            )
    lines.extend(format_table(rows))
    for service in document.get("services", []):
        for instance in service.get("instances", []):
            lines.extend(explain_instance(instance))
    for fault in document.get("faults", []):
        lines.append(f"fault {describe_fault(fault, now=now)}")
    for error in document.get("errors", []):
        lines.append(f"error: {error}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    document = ask("GET", "/v1/status")
    if document is None:
        return 1
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(format_status(document, now=time.time()))
    return 0
