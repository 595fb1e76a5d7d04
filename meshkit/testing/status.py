"""Reading a running mesh from the test process: the control API and the log files.

``fetch_status`` reads the status document with the control API's blocking
client (``meshkit.api.control``; the test process calls it from sync tests,
and from worker threads for async ones).  The functions below it are pure: they look things up in a ``/v1/status``
document and turn the state of the instances into messages for people.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from meshkit.api.control import ControlPlaneError, request_json_blocking
from meshkit.runtime.ingress import INGRESS_SERVICE

StatusDocument = dict[str, Any]
InstanceDocument = dict[str, Any]
STATUS_TIMEOUT = 5.0


def fetch_status(
    socket_path: Path, *, timeout: float = STATUS_TIMEOUT, wait_ready: bool = False
) -> StatusDocument:
    """The control plane's ``/v1/status`` document; ``ControlPlaneError`` if it has none.

    ``wait_ready``: answered once the mesh is ready (or after the control plane's
    ``READY_WAIT``, whichever comes first), so a caller waiting for it need not poll.
    """
    path = "/v1/status?wait=ready" if wait_ready else "/v1/status"
    code, document = request_json_blocking(socket_path, "GET", path, timeout=timeout)
    if code != 200 or not isinstance(document, dict):
        raise ControlPlaneError(f"the control plane answered {code}: {document}")
    return document


def service_names(status: StatusDocument) -> list[str]:
    """The mesh's services, in declaration order, without the test ingress."""
    names = dict.fromkeys(service["name"] for service in status.get("services", []))
    names.pop(INGRESS_SERVICE, None)
    return list(names)


def instances_of(status: StatusDocument, service: str) -> list[InstanceDocument]:
    """Every instance of ``service`` (all versions), in status order."""
    found = [
        instance
        for entry in status.get("services", [])
        if entry["name"] == service
        for instance in entry["instances"]
    ]
    if not found:
        known = ", ".join(service_names(status)) or "none"
        raise KeyError(f"the mesh has no service {service!r} (its services: {known})")
    return found


def pick_instance(status: StatusDocument, service: str, instance: int | str) -> InstanceDocument:
    """An instance of ``service`` by position (0, 1, ...) or by id (``catalog-v1-1``)."""
    candidates = instances_of(status, service)
    if isinstance(instance, str):
        for candidate in candidates:
            if candidate["id"] == instance:
                return candidate
    elif 0 <= instance < len(candidates):
        return candidates[instance]
    ids = ", ".join(candidate["id"] for candidate in candidates)
    raise KeyError(f"service {service!r} has no instance {instance!r} (its instances: {ids})")


def ingress_port(status: StatusDocument, service: str) -> int:
    """The test ingress's plaintext loopback port that leads to ``service``."""
    instances_of(status, service)
    for ingress in instances_of(status, INGRESS_SERVICE):
        port = ingress.get("upstream_ports", {}).get(service)
        if ingress.get("state") == "healthy" and port is not None:
            return int(port)
    raise LookupError(
        f"the test ingress has no port for {service!r} right now (is {INGRESS_SERVICE} healthy?)"
    )


def outbound_port(status: StatusDocument, service: str) -> int:
    """The outbound (``HTTP_PROXY``) port of a healthy instance of ``service``."""
    for instance in instances_of(status, service):
        if instance.get("state") == "healthy" and instance.get("outbound_port") is not None:
            return int(instance["outbound_port"])
    raise LookupError(f"no healthy instance of {service!r} has an outbound port right now")


def gateway_url(status: StatusDocument) -> str | None:
    gateways = status.get("gateways", [])
    return str(gateways[0]["url"]) if gateways else None


def unhealthy_instances(status: StatusDocument, service: str | None) -> list[InstanceDocument]:
    """Instances (of ``service``, or of the whole mesh) that are not healthy."""
    if service is None:
        candidates: Iterable[InstanceDocument] = (
            instance for entry in status.get("services", []) for instance in entry["instances"]
        )
    else:
        candidates = instances_of(status, service)
    return [instance for instance in candidates if instance.get("state") != "healthy"]


def is_healthy(status: StatusDocument, service: str | None) -> bool:
    """``service`` fully healthy; for the whole mesh, the control plane's ``ready`` too."""
    if unhealthy_instances(status, service):
        return False
    return service is not None or bool(status.get("ready"))


def log_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log file, or a note saying it is missing."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def describe_unhealthy(
    status: StatusDocument | None, service: str | None, *, logs_dir: Path, lines: int
) -> str:
    """Which instances are not healthy, why, and the end of their logs."""
    if status is None:
        return "the control plane never answered"
    stuck = unhealthy_instances(status, service)
    if not stuck and service is None and not status.get("ready"):
        return "every instance is healthy but the gateway is not listening yet"
    parts = []
    for instance in stuck:
        reason = instance.get("last_error")
        header = f"{instance['id']} is {instance.get('state')}"
        parts.append(header if not reason else f"{header}: {reason}")
        parts.append(f"  last lines of {logs_dir / (instance['id'] + '.log')}:")
        tail = log_tail(logs_dir / f"{instance['id'].partition('~')[0]}.log", lines)
        parts.extend(f"    {line}" for line in (tail.splitlines() or ["(empty)"]))
    errors = status.get("errors", [])
    if errors:
        parts.append("errors reported by the control plane:")
        parts.extend(f"  {error}" for error in errors)
    return "\n".join(parts)
