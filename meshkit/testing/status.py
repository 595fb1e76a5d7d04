"""Reading a running mesh from the test process: the control API and the log files.

``ControlClient`` makes blocking HTTP/1.1 calls to the control socket (the test
process talks to it from sync tests, and from worker threads for async ones).
The functions below it are pure: they look things up in a ``/v1/status``
document and turn the state of the instances into messages for people.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from meshkit.testing.ingress import INGRESS_SERVICE

StatusDocument = dict[str, Any]
InstanceDocument = dict[str, Any]


class ControlUnavailable(Exception):
    """Nothing answers on the control socket (the mesh is not, or no longer, running)."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = str(socket_path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    """Blocking calls to the control API of one mesh, each bounded by ``timeout``."""

    def __init__(self, socket_path: Path, *, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> tuple[int, Any]:
        """One request (``body`` sent as JSON); ``timeout`` overrides the client's."""
        connection = _UnixHTTPConnection(
            self.socket_path, self.timeout if timeout is None else timeout
        )
        try:
            if body is None:
                connection.request(method, path)
            else:
                payload = json.dumps(body).encode()
                headers = {"Content-Type": "application/json"}
                connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ControlUnavailable(
                f"the mesh's control socket {self.socket_path} does not answer ({exc})"
            ) from None
        finally:
            connection.close()
        return response.status, (json.loads(data) if data else None)

    def status(self) -> StatusDocument:
        code, document = self.call("GET", "/v1/status")
        if code != 200 or not isinstance(document, dict):
            raise ControlUnavailable(f"the control plane answered {code}: {document}")
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
        tail = log_tail(logs_dir / f"{instance['id']}.log", lines)
        parts.extend(f"    {line}" for line in (tail.splitlines() or ["(empty)"]))
    errors = status.get("errors", [])
    if errors:
        parts.append("errors reported by the control plane:")
        parts.extend(f"  {error}" for error in errors)
    return "\n".join(parts)
