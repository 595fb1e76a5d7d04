"""The one client of the control API: HTTP/1.1 + JSON over the control plane's Unix socket.

One sans-I/O core (``ControlExchange``) builds the request and reads the
answer; two thin faces move the bytes:

* ``request_json`` (async, trio): the sidecar, and async tests;
* ``request_json_blocking`` (a blocking socket with a timeout): the CLI and
  the pytest handle.

Both send one request per connection (``Connection: close``) and raise
``ControlPlaneError`` when nothing answers or the answer is not HTTP/JSON.
``ControlClient`` wraps the calls a sidecar makes for its instance (config
long-poll, ready, ack, certificate).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any
from urllib.parse import quote

import h11
import trio

LONG_POLL_SECONDS = 30.0  # the server answers 204 after about 20 s
RECEIVE_SIZE = 65536


class ControlPlaneError(Exception):
    """The control plane could not be reached, or answered something unreadable."""


class ControlPlaneTimeout(ControlPlaneError):
    """A blocking call got no answer within its timeout."""


class ControlExchange:
    """One control API request and the reading of its answer; sans-I/O.

    Send ``request`` (the request's bytes, ``body`` as JSON when not None),
    then feed what the socket gives to ``receive`` until ``done``.
    """

    def __init__(
        self, socket_path: str | os.PathLike[str], method: str, path: str, body: Any = None
    ) -> None:
        self._where = os.fspath(socket_path)
        self._conn = h11.Connection(h11.CLIENT)
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = [
            ("host", "meshkit-control"),
            ("connection", "close"),
            ("content-length", str(len(payload))),
        ]
        if body is not None:
            headers.append(("content-type", "application/json"))
        self.request = (
            self._conn.send(h11.Request(method=method, target=path, headers=headers))
            + self._conn.send(h11.Data(data=payload))
            + self._conn.send(h11.EndOfMessage())
        )
        self._status = 0
        self._chunks: list[bytes] = []
        self.done = False

    def receive(self, data: bytes) -> None:
        """Feed what the socket gave (``b""`` at its end); sets ``done`` once answered."""
        if not data and self._status == 0:
            raise ControlPlaneError(
                f"the control plane at {self._where} closed the connection without answering"
            )
        try:
            self._conn.receive_data(data)
            while not self.done:
                event = self._conn.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.Response):
                    self._status = event.status_code
                elif isinstance(event, h11.Data):
                    self._chunks.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    self.done = True
        except h11.ProtocolError as error:
            raise ControlPlaneError(f"control plane connection failed: {error}") from None

    def answer(self) -> tuple[int, Any]:
        """``(status, decoded JSON or None)``."""
        raw = b"".join(self._chunks)
        if not raw:
            return self._status, None
        try:
            return self._status, json.loads(raw)
        except ValueError:
            raise ControlPlaneError(
                f"control plane answered {self._status} with a body that is not JSON: {raw[:200]!r}"
            ) from None


def _unreachable(socket_path: str | os.PathLike[str], error: OSError) -> ControlPlaneError:
    return ControlPlaneError(
        f"cannot reach the control plane at {os.fspath(socket_path)}: {error.strerror or error}"
    )


async def request_json(
    socket_path: str | os.PathLike[str], method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """One request to the control API: ``(status, decoded JSON or None)``.

    Callers bound the wait with their own cancel scope.
    """
    try:
        stream = await trio.open_unix_socket(os.fspath(socket_path))
    except OSError as error:
        raise _unreachable(socket_path, error) from None
    exchange = ControlExchange(socket_path, method, path, body)
    async with stream:
        try:
            await stream.send_all(exchange.request)
            while not exchange.done:
                exchange.receive(await stream.receive_some(RECEIVE_SIZE))
        except (OSError, trio.BrokenResourceError) as error:
            raise ControlPlaneError(f"control plane connection failed: {error}") from None
    return exchange.answer()


def request_json_blocking(
    socket_path: str | os.PathLike[str],
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float,
) -> tuple[int, Any]:
    """``request_json`` for blocking callers; each socket operation bounded by ``timeout``."""
    exchange = ControlExchange(socket_path, method, path, body)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(socket_path))
        except (TimeoutError, BlockingIOError):
            raise ControlPlaneTimeout(
                f"the control plane at {os.fspath(socket_path)} did not accept a connection "
                f"within {timeout:g}s (its backlog is full: it is slow or stopped)"
            ) from None
        except OSError as error:
            raise _unreachable(socket_path, error) from None
        try:
            sock.sendall(exchange.request)
            while not exchange.done:
                exchange.receive(sock.recv(RECEIVE_SIZE))
        except TimeoutError:
            raise ControlPlaneTimeout(
                f"the control plane at {os.fspath(socket_path)} did not answer within {timeout:g}s"
            ) from None
        except OSError as error:
            raise ControlPlaneError(f"control plane connection failed: {error}") from None
    return exchange.answer()


def error_text(body: Any) -> str:
    """The ``error`` of a control API answer, or the answer itself."""
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return repr(body)


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
            raise ControlPlaneError(f"config request answered {status}: {error_text(body)}")
        return None

    async def report_ready(self, *, pid: int, ports: dict[str, int]) -> None:
        await self._post("ready", {"pid": pid, "ports": ports}, what="ready report")

    async def acknowledge(self, *, version: int, error: str | None) -> None:
        await self._post("ack", {"version": version, "error": error}, what="ack")

    async def send_spans(self, spans: list[list[Any]]) -> None:
        """``POST .../spans``: finished spans for the control plane's span store, each a
        row of its values in ``tracing.SPAN_FIELDS`` order (``Tracer.take_shippable``)."""
        await self._post("spans", {"spans": spans}, what="spans")

    async def request_certificate(self, body: dict[str, str]) -> tuple[int, Any]:
        """``POST .../certificate``: the raw ``(status, answer)``; the caller judges it."""
        path = f"/v1/instances/{self._quoted}/certificate"
        return await request_json(self.socket_path, "POST", path, body)

    async def _post(self, action: str, body: dict[str, Any], *, what: str) -> None:
        path = f"/v1/instances/{self._quoted}/{action}"
        status, answer = await request_json(self.socket_path, "POST", path, body)
        if status != 200:
            raise ControlPlaneError(f"{what} answered {status}: {error_text(answer)}")
