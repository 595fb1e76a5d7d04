"""``GET /v1/status`` over ``.meshkit/run/control.sock``, with the standard library only.

The control API is HTTP/1.1 over a Unix socket, one request per connection
(see ``meshkit/registry/server/api.py``).  Asking it directly instead of
running ``meshkit status --json`` keeps a poll to a connect and a read, so
polling every few tens of milliseconds does not load the machine being
measured with an interpreter start each time.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CONTROL_SOCKET = Path(".meshkit") / "run" / "control.sock"
REQUEST_TIMEOUT = 5.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path) -> None:
        super().__init__("meshkit-control", timeout=REQUEST_TIMEOUT)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(REQUEST_TIMEOUT)
        try:
            sock.connect(str(self._socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def read_status(directory: Path) -> Mapping[str, Any] | None:
    """The status document of the mesh run from ``directory``, or None while none answers."""
    socket_path = directory / CONTROL_SOCKET
    if not socket_path.exists():
        return None
    connection = _UnixConnection(socket_path)
    try:
        connection.request("GET", "/v1/status", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        status = json.loads(body)
    except (OSError, http.client.HTTPException, json.JSONDecodeError):
        return None
    finally:
        connection.close()
    return status if isinstance(status, Mapping) else None


def instances(status: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every app instance record of a status document."""
    for service in status.get("services", []):
        yield from service.get("instances", [])


def all_ready(status: Mapping[str, Any] | None, *, expected_instances: int) -> bool:
    """``ready``, ``expected_instances`` app instances all healthy, every sidecar SYNCED."""
    if status is None or status.get("ready") is not True:
        return False
    records = list(instances(status))
    if len(records) != expected_instances:
        return False
    sidecars = [*records, *status.get("gateways", [])]
    return all(record.get("state", "healthy") == "healthy" for record in records) and all(
        record.get("sync") == "SYNCED" for record in sidecars
    )


def app_pids(status: Mapping[str, Any]) -> list[int]:
    return [int(record["pid"]) for record in instances(status) if record.get("pid")]


def reload_report(status: Mapping[str, Any] | None) -> Mapping[str, Any]:
    report = None if status is None else status.get("reload")
    return report if isinstance(report, Mapping) else {}
