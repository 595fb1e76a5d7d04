"""The status document served on ``GET /v1/status`` and shown by ``meshkit status``.

Pure: it reads the registry and returns plain JSON-ready data in the shape the
control API contract fixes.
"""

from __future__ import annotations

from typing import Any

from meshkit.registry.state import InstanceRecord, Registry


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


def _gateway_dict(registry: Registry, url: str) -> dict[str, Any]:
    record = registry.get("gateway")
    return {"url": url, "pid": record.sidecar_pid, "admin_port": record.admin_port}


def _instance_dict(record: InstanceRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "state": record.state,
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
    }


def status_document(registry: Registry, *, file: str) -> dict[str, Any]:
    """The ``/v1/status`` JSON: services grouped by (name, version), in order."""
    services: dict[tuple[str, str | None], list[InstanceRecord]] = {}
    for record in registry.app_instances():
        services.setdefault((record.service, record.version), []).append(record)
    url = gateway_url(registry)
    errors = list(registry.problems())
    errors.extend(
        f"{rec.id}: {rec.last_error}"
        for rec in registry.instances()
        if rec.last_error and rec.state in ("crashed", "backoff", "unhealthy")
    )
    return {
        "mesh": registry.mesh,
        "ready": mesh_ready(registry),
        "file": file,
        "gateways": [] if url is None else [_gateway_dict(registry, url)],
        "services": [
            {
                "name": name,
                "version": version,
                "instances": [_instance_dict(rec) for rec in records],
            }
            for (name, version), records in services.items()
        ],
        "errors": errors,
    }
