"""A client of the control API: HTTP/1.1 + JSON over the control plane's Unix socket.

``request_json`` is independent of the sidecar; the CLI uses it too.
``ControlClient`` wraps the three calls a sidecar makes (config long-poll,
ready, ack).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import h11
import trio

LONG_POLL_SECONDS = 30.0  # the server answers 204 after about 20 s


class ControlPlaneError(Exception):
    """The control plane could not be reached, or answered something unreadable."""


async def request_json(
    socket_path: str | os.PathLike[str],
    method: str,
    path: str,
    body: Any = None,
) -> tuple[int, Any]:
    """Send one request to the control API and return ``(status, decoded JSON or None)``.

    One request per connection (``Connection: close``).  Raises
    ``ControlPlaneError`` when the socket is missing or the answer is not HTTP/JSON.
    Callers bound the wait with their own cancel scope.
    """
    payload = b"" if body is None else json.dumps(body).encode()
    headers = [
        ("host", "meshkit-control"),
        ("connection", "close"),
        ("content-length", str(len(payload))),
    ]
    if body is not None:
        headers.append(("content-type", "application/json"))
    try:
        stream = await trio.open_unix_socket(os.fspath(socket_path))
    except OSError as error:
        raise ControlPlaneError(
            f"cannot reach the control plane at {os.fspath(socket_path)}: {error.strerror or error}"
        ) from None
    conn = h11.Connection(h11.CLIENT)
    status = 0
    chunks: list[bytes] = []
    async with stream:
        try:
            await stream.send_all(
                conn.send(h11.Request(method=method, target=path, headers=headers))
                + conn.send(h11.Data(data=payload))
                + conn.send(h11.EndOfMessage())
            )
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data and status == 0:
                        raise ControlPlaneError(
                            f"the control plane at {os.fspath(socket_path)} closed the "
                            "connection without answering"
                        )
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
        except (OSError, trio.BrokenResourceError, h11.ProtocolError) as error:
            raise ControlPlaneError(f"control plane connection failed: {error}") from None
    raw = b"".join(chunks)
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        raise ControlPlaneError(
            f"control plane answered {status} with a body that is not JSON: {raw[:200]!r}"
        ) from None


class ControlClient:
    """The calls a sidecar makes to the control plane for its instance."""

    def __init__(self, *, socket_path: str | os.PathLike[str], instance: str) -> None:
        self.socket_path = socket_path
        self.instance = instance
        self._quoted = quote(instance, safe="")

    async def poll_config(self, after: int) -> tuple[int, Any] | None:
        """``(version, raw config dict)`` newer than ``after``, or None if nothing changed.

        Raises ``ControlPlaneError`` on any other answer.
        """
        with trio.move_on_after(LONG_POLL_SECONDS):
            status, body = await request_json(
                self.socket_path, "GET", f"/v1/config/{self._quoted}?after={after}"
            )
            if status == 204:
                return None
            if status == 200 and isinstance(body, dict) and isinstance(body.get("version"), int):
                return body["version"], body.get("config")
            raise ControlPlaneError(f"config request answered {status}: {_error_text(body)}")
        return None

    async def report_ready(self, *, pid: int, ports: dict[str, int]) -> None:
        status, body = await request_json(
            self.socket_path,
            "POST",
            f"/v1/instances/{self._quoted}/ready",
            {"pid": pid, "ports": ports},
        )
        if status != 200:
            raise ControlPlaneError(f"ready report answered {status}: {_error_text(body)}")

    async def acknowledge(self, *, version: int, error: str | None) -> None:
        status, body = await request_json(
            self.socket_path,
            "POST",
            f"/v1/instances/{self._quoted}/ack",
            {"version": version, "error": error},
        )
        if status != 200:
            raise ControlPlaneError(f"ack answered {status}: {_error_text(body)}")


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return repr(body)
