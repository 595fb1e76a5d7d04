"""Test doubles for the sidecar tests: a stub control plane, a tiny backend, a client.

Everything runs in the test's trio nursery on 127.0.0.1 or a Unix socket in
tmp_path, and stops with it.  The few tests at the bottom check the doubles
themselves (and ``control.request_json`` against the stub).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from meshkit.api.control import request_json
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.wire import config_to_dict

# ---------------------------------------------------------------- control plane


class StubControlPlane:
    """The control API of the shared contract, with configs set by the test."""

    def __init__(self, socket_path: Path, *, long_poll: float = 20.0) -> None:
        self.socket_path = socket_path
        self.long_poll = long_poll
        self.configs: dict[str, tuple[int, Any]] = {}
        self.acks: dict[str, list[tuple[int, str | None]]] = {}
        # Spans the sidecars shipped, by instance (POST /v1/instances/<id>/spans).
        self.spans: dict[str, list[dict[str, Any]]] = {}
        self.span_posts: dict[str, int] = {}  # how many POSTs brought them
        self.ready: dict[str, dict[str, Any]] = {}
        self._changed = trio.Event()
        self.listener: trio.SocketListener | None = None

    def publish(
        self, instance: str, config: ProxyConfig | Any, *, version: int | None = None
    ) -> int:
        """Make ``config`` (a ProxyConfig, or any raw JSON) the instance's next version."""
        current = self.configs.get(instance, (0, None))[0]
        version = current + 1 if version is None else version
        raw = config_to_dict(config) if isinstance(config, ProxyConfig) else config
        if isinstance(config, ProxyConfig):
            raw["version"] = version
        self.configs[instance] = (version, raw)
        self._changed.set()
        self._changed = trio.Event()
        return version

    async def wait_ready(self, instance: str) -> dict[str, int]:
        while instance not in self.ready:
            await self._wait_change()
        ports: dict[str, int] = self.ready[instance]["ports"]
        return ports

    async def wait_ack(self, instance: str, version: int) -> str | None:
        while True:
            for acked, error in self.acks.get(instance, []):
                if acked == version:
                    return error
            await self._wait_change()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.socket_path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(self.socket_path))
        sock.listen(64)
        self.listener = trio.SocketListener(sock)
        task_status.started()
        await trio.serve_listeners(self._handle, [self.listener])

    async def _handle(self, stream: trio.abc.Stream) -> None:
        # A sidecar may hang up at any time (shutdown, cancelled long-poll).
        async with stream:
            try:
                method, target, body = await read_request(stream)
                if not method:
                    return
                status, answer = await self._answer(method, target, body)
                payload = b"" if answer is None else json.dumps(answer).encode()
                await write_response(stream, status, payload)
            except (trio.BrokenResourceError, h11.RemoteProtocolError):
                return

    async def _answer(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        parts = url.path.strip("/").split("/")
        if method == "GET" and parts[:2] == ["v1", "config"]:
            instance = parts[2]
            after = int(parse_qs(url.query).get("after", ["0"])[0])
            with trio.move_on_after(self.long_poll):
                while True:
                    if instance not in self.configs:
                        return 404, {"error": f"unknown instance '{instance}'"}
                    version, raw = self.configs[instance]
                    if version > after:
                        return 200, {"version": version, "config": raw}
                    await self._wait_change()
            return 204, None
        if method == "POST" and parts[:2] == ["v1", "instances"]:
            data = json.loads(body)
            if parts[3] == "spans":
                self.spans.setdefault(parts[2], []).extend(data["spans"])
                self.span_posts[parts[2]] = self.span_posts.get(parts[2], 0) + 1
                return 200, {"kept": len(data["spans"])}
            if parts[3] == "ready":
                self.ready[parts[2]] = data
            else:
                self.acks.setdefault(parts[2], []).append((data["version"], data["error"]))
            self._notify()
            return 200, {}
        return 404, {"error": f"no endpoint {method} {url.path}"}


# ---------------------------------------------------------------- HTTP helpers


async def read_request(stream: trio.abc.Stream) -> tuple[str, str, bytes]:
    """Read one whole request (for small control-plane bodies only)."""
    conn = h11.Connection(h11.SERVER)
    method = target = ""
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            method, target = event.method.decode(), event.target.decode()
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        else:
            return method, target, b"".join(chunks)


async def write_response(stream: trio.abc.Stream, status: int, body: bytes) -> None:
    head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    await stream.send_all(head.encode() + body)


def pattern_bytes(size: int, chunk: int = 65536) -> Iterable[bytes]:
    """``size`` bytes of a repeating pattern, produced chunk by chunk (never held whole)."""
    block = bytes(range(256)) * math.ceil(chunk / 256)
    sent = 0
    while sent < size:
        piece = block[: min(chunk, size - sent)]
        sent += len(piece)
        yield piece


class Backend:
    """A tiny HTTP/1.1 app with keep-alive.

    * ``GET /info``: JSON of the request as received (method, target, headers)
      plus ``name`` and the count of connections accepted so far;
    * ``GET /slow?seconds=S``: the same, after S seconds;
    * ``GET /status/N``: an empty response with status N (HEAD: content-length 7);
    * ``POST /count``: reads the body, answers ``{"bytes": n}``;
    * ``POST /count-and-stream?bytes=N``: reads the body, then streams N bytes
      back chunked (no content-length); ``x-received`` says what it read.
    """

    def __init__(self, name: str, *, close_after_response: bool = False) -> None:
        self.name = name
        self.close_after_response = close_after_response
        self.connections = 0
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    request: h11.Request | None = None
                    received = 0
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(bytes(await stream.receive_some(65536)))
                        elif isinstance(event, h11.Request):
                            request = event
                        elif isinstance(event, h11.Data):
                            received += len(event.data)
                        elif isinstance(event, h11.EndOfMessage):
                            break
                        else:
                            return
                    assert request is not None
                    await self._respond(stream, conn, request, received)
                    if self.close_after_response:
                        return
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
            except (trio.BrokenResourceError, h11.ProtocolError):
                return

    async def _respond(
        self, stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, received: int
    ) -> None:
        url = urlsplit(request.target.decode())
        if url.path == "/slow":
            await trio.sleep(float(parse_qs(url.query)["seconds"][0]))
        if url.path.startswith("/status/"):
            status = int(url.path.rsplit("/", 1)[1])
            headers = [("content-length", "7")] if request.method == b"HEAD" else []
            await stream.send_all(
                conn.send(h11.Response(status_code=status, headers=headers))
                + conn.send(h11.EndOfMessage())
            )
            return
        if url.path == "/count-and-stream":
            size = int(parse_qs(url.query)["bytes"][0])
            await stream.send_all(
                conn.send(h11.Response(status_code=200, headers=[("x-received", str(received))]))
            )
            for piece in pattern_bytes(size):
                await stream.send_all(conn.send(h11.Data(data=piece)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return
        if url.path == "/count":
            document: Any = {"bytes": received}
        else:
            document = {
                "name": self.name,
                "method": request.method.decode(),
                "target": request.target.decode(),
                "headers": [[k.decode(), v.decode()] for k, v in request.headers],
                "connections": self.connections,
            }
        body = json.dumps(document).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        await stream.send_all(
            conn.send(h11.Response(status_code=200, headers=headers))
            + conn.send(h11.Data(data=body))
            + conn.send(h11.EndOfMessage())
        )


class Response:
    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, size: int
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.size = size

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.encode():
                return value.decode()
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """An HTTP/1.1 client on one keep-alive connection, streaming bodies from iterables."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def request(
        self,
        method: str,
        target: str,
        *,
        host: str = "example",
        headers: list[tuple[str, str]] | None = None,
        body: Iterable[bytes] | None = None,
        keep_body: bool = True,
    ) -> Response:
        all_headers = [("host", host), *(headers or [])]
        if body is not None and not any(
            k.lower() in ("content-length", "transfer-encoding") for k, _ in all_headers
        ):
            all_headers.append(("transfer-encoding", "chunked"))
        await self.stream.send_all(
            self.conn.send(h11.Request(method=method, target=target, headers=all_headers))
        )
        for piece in body or ():
            await self.stream.send_all(self.conn.send(h11.Data(data=piece)))
        await self.stream.send_all(self.conn.send(h11.EndOfMessage()))
        status = 0
        response_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status, response_headers = event.status_code, list(event.headers)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if keep_body:
                    chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.InformationalResponse):
                continue
            else:
                raise AssertionError(f"unexpected {event!r}")
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Response(status, response_headers, b"".join(chunks), size)


async def one_request(port: int, method: str, target: str, **kwargs: Any) -> Response:
    client = await Client.connect(port)
    try:
        return await client.request(method, target, **kwargs)
    finally:
        await client.aclose()


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(data)
        received = bytearray()
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
        return bytes(received)


async def async_chunks(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


# ---------------------------------------------------------------- tests of the doubles


async def test_request_json_talks_to_the_stub_control_plane(tmp_path: Path) -> None:
    control = StubControlPlane(tmp_path / "control.sock", long_poll=0.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(control.serve)
        status, body = await request_json(control.socket_path, "GET", "/v1/config/nobody")
        assert (status, body) == (404, {"error": "unknown instance 'nobody'"})
        control.configs["a"] = (3, {"x": 1})
        status, body = await request_json(control.socket_path, "GET", "/v1/config/a?after=3")
        assert (status, body) == (204, None)
        status, body = await request_json(
            control.socket_path, "POST", "/v1/instances/a/ack", {"version": 3, "error": None}
        )
        assert (status, body, control.acks["a"]) == (200, {}, [(3, None)])
        nursery.cancel_scope.cancel()


async def test_request_json_reports_a_missing_socket_readably(tmp_path: Path) -> None:
    from meshkit.api.control import ControlPlaneError

    try:
        await request_json(tmp_path / "nothing.sock", "GET", "/v1/status")
    except ControlPlaneError as error:
        assert "cannot reach the control plane" in str(error)
    else:
        raise AssertionError("expected ControlPlaneError")
