"""The status document served on ``GET /v1/status`` and shown by ``meshkit status``.

Pure: it reads the registry (and the clock it is given) and returns plain
JSON-ready data in the shape the control API contract fixes.

Certificates: each instance reports ``cert_expires_at`` (epoch seconds, or
None before its sidecar has one) and ``cert_state``: ``none``, ``valid``,
``expired``, or ``refused: <reason>`` when the last certificate request for it
was refused; the last two also add a line to ``errors``.

Config sync (``istioctl proxy-status``): each instance and the gateway report
``config_version`` (the newest published for it), ``applied_version`` (the
last it acknowledged as applied) and ``sync``: ``SYNCED`` (it applied the
newest), ``STALE`` (it has not answered the newest yet) or ``NACKED: <reason>``
(it refused the newest and serves ``applied_version``; also a line of
``errors``).  ``reload`` is the outcome of the last Meshfile reload: how many
were applied, the time from the detected change to the last sidecar's answer
(``duration_ms``), and the error of a Meshfile that could not be applied
(also a line of ``errors``, until a good version is saved).

Each instance also says why its generation started (``reason``), the log
file its app writes (``log_file``: every generation of a name writes on in
the same file), its app's last exit (``exit_status``, ``log_tail``) and,
while it is not healthy, the ports its processes listen on
(``listening_ports``; one that is not ``$PORT`` adds a line to ``errors``).

``faults`` lists the runtime faults in force (``meshkit fault``), each as
``StoredFault.to_dict`` shapes it.
"""

from __future__ import annotations

import time
from typing import Any

from meshkit.registry.compile import GATEWAY_TLS_LISTENER
from meshkit.registry.state import GATEWAY_INSTANCE, InstanceRecord, Registry


def gateway_url(registry: Registry) -> str | None:
    """The gateway's URL once its sidecar has bound its listener, else None."""
    for record in registry.instances():
        if record.kind == "gateway":
            port = record.sidecar_ports.get("gateway")
            if port is not None:
                return f"http://127.0.0.1:{port}"
    return None


def mesh_ready(registry: Registry) -> bool:
    """Every app instance healthy, and the gateway (if any) listening."""
    has_gateway = any(rec.kind == "gateway" for rec in registry.instances())
    if has_gateway and gateway_url(registry) is None:
        return False
    return registry.all_healthy()


def _gateway_dict(registry: Registry, url: str, *, now: float) -> dict[str, Any]:
    record = registry.get(GATEWAY_INSTANCE)
    gateway: dict[str, Any] = {
        "url": url,
        "pid": record.sidecar_pid,
        "admin_port": record.admin_port,
    }
    tls_port = record.sidecar_ports.get(GATEWAY_TLS_LISTENER)
    if tls_port is not None:
        gateway["tls_url"] = f"https://localhost:{tls_port}"
    gateway.update(_certificate_fields(record, now=now))
    gateway.update(_sync_fields(registry, record))
    return gateway


SYNCED = "SYNCED"
STALE = "STALE"
NACKED = "NACKED"


def sync_state(registry: Registry, record: InstanceRecord) -> str:
    """``SYNCED``, ``STALE`` or ``NACKED: <reason>`` for one sidecar (see the module docstring)."""
    ack = registry.ack_of(record.id)
    if ack is None or ack.version < registry.config_version(record.id):
        return STALE
    if ack.error is not None:
        return f"{NACKED}: {ack.error}"
    return SYNCED


def _sync_fields(registry: Registry, record: InstanceRecord) -> dict[str, Any]:
    applied = registry.applied_config_of(record.id)
    return {
        "config_version": registry.config_version(record.id),
        "applied_version": None if applied is None else applied.version,
        "sync": sync_state(registry, record),
    }


def _reload_dict(registry: Registry) -> dict[str, Any]:
    report = registry.reload
    return {
        "reloads": report.reloads,
        "error": report.error,
        "duration_ms": report.duration_ms,
        "summary": report.summary,
        "finished_at": report.finished_at,
        "phases_ms": dict(report.phases_ms),
    }


def certificate_state(record: InstanceRecord, *, now: float) -> str:
    """``none``, ``valid``, ``expired`` or ``refused: <reason>`` (see the module docstring)."""
    if record.cert_error is not None:
        return f"refused: {record.cert_error}"
    if record.cert_not_after is None:
        return "none"
    return "expired" if now >= record.cert_not_after else "valid"


def _certificate_fields(record: InstanceRecord, *, now: float) -> dict[str, Any]:
    return {
        "cert_expires_at": record.cert_not_after,
        "cert_state": certificate_state(record, now=now),
    }


def _certificate_problem(record: InstanceRecord, *, now: float) -> str | None:
    if record.state == "stopped":
        return None
    state = certificate_state(record, now=now)
    if state == "expired":
        return f"{record.id}: its certificate expired and was not renewed"
    if state.startswith("refused"):
        return f"{record.id}: certificate {state}"
    return None


def _instance_dict(registry: Registry, record: InstanceRecord, *, now: float) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "generation": record.generation,
        "state": "draining" if record.retiring and record.state != "stopped" else record.state,
        "pid": record.pid,
        "sidecar_pid": record.sidecar_pid,
        "restarts": record.restarts,
        "port": record.port,
        "inbound_port": record.inbound_port,
        "outbound_port": record.outbound_port,
        "admin_port": record.admin_port,
        "upstream_ports": {
            name.removeprefix("upstream:"): port
            for name, port in record.sidecar_ports.items()
            if name.startswith("upstream:")
        },
        "started_at": record.started_at,
        "reason": record.reason,
        "log_file": f"{record.name}.log",
        "exit_status": record.exit_status,
        "log_tail": list(record.log_tail),
        "listening_ports": list(record.listening_ports),
        **_certificate_fields(record, now=now),
        **_sync_fields(registry, record),
    }


def status_document(registry: Registry, *, file: str, now: float | None = None) -> dict[str, Any]:
    """The ``/v1/status`` JSON: services grouped by (name, version), in order.

    ``now`` (epoch seconds, default the wall clock) decides which certificates
    have expired.
    """
    now = time.time() if now is None else now
    services: dict[tuple[str, str | None], list[InstanceRecord]] = {}
    for record in registry.app_instances():
        services.setdefault((record.service, record.version), []).append(record)
    url = gateway_url(registry)
    errors = list(registry.problems())
    if registry.reload.error is not None:
        errors.append(f"reload: {registry.reload.error}")
    errors.extend(
        f"{rec.id}: {rec.last_error}"
        for rec in registry.instances()
        if rec.last_error and rec.state in ("crashed", "backoff", "unhealthy")
    )
    errors.extend(
        f"{rec.id}: listens on port {', '.join(map(str, rec.listening_ports))}, "
        f"not on $PORT {rec.port}"
        for rec in registry.app_instances()
        if rec.listening_ports and rec.port not in rec.listening_ports
    )
    for record in registry.instances():
        problem = _certificate_problem(record, now=now)
        if problem is not None:
            errors.append(problem)
        sync = sync_state(registry, record)
        if sync.startswith(NACKED) and record.state != "stopped":
            errors.append(
                f"{record.id}: config version {registry.config_version(record.id)} {sync}"
            )
    return {
        "mesh": registry.mesh,
        "ready": mesh_ready(registry),
        "file": file,
        "gateways": [] if url is None else [_gateway_dict(registry, url, now=now)],
        "services": [
            {
                "name": name,
                "version": version,
                "instances": [_instance_dict(registry, rec, now=now) for rec in records],
            }
            for (name, version), records in services.items()
        ],
        "reload": _reload_dict(registry),
        "faults": [stored.to_dict(now=now) for stored in registry.faults.active(now)],
        "errors": errors,
    }
