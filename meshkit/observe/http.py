"""A small HTTP/1.1 server and client on loopback for the observe room (h11 over trio).

One request per connection (``Connection: close``): the dashboard polls, and
Prometheus scrapes every few seconds, so keep-alive would buy nothing here.
``serve_http`` hands each request to ``handler`` and sends what it returns;
``get`` fetches one page from a sidecar's admin port and ``post`` sends one body
(the OTLP export), each within a timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import attrs
import h11
import trio

from meshkit.api.access import bearer_header

MAX_REQUEST_BYTES = 1024 * 1024
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
READ_TIMEOUT = 10.0

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@attrs.frozen(kw_only=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]


class _TooLarge(Exception):
    pass


async def _read_message(
    stream: trio.abc.Stream, conn: h11.Connection, *, limit: int
) -> tuple[h11.Request | h11.Response, bytes] | None:
    """The next whole message (head and body), None if the peer closed; ``_TooLarge``."""
    head: h11.Request | h11.Response | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, (h11.Request, h11.Response)):
            head = event
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                raise _TooLarge
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return head, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _read_request(stream: trio.abc.Stream, conn: h11.Connection) -> Request | None:
    message = await _read_message(stream, conn, limit=MAX_REQUEST_BYTES)
    if message is None or not isinstance(message[0], h11.Request):
        return None
    head, body = message[0], message[1]
    path, _, query = head.target.decode("ascii", "replace").partition("?")
    headers = {name.decode().lower(): value.decode("latin-1") for name, value in head.headers}
    return Request(method=head.method.decode(), path=path, query=query, headers=headers, body=body)


async def _send(stream: trio.abc.Stream, conn: h11.Connection, response: Response) -> None:
    headers = [
        ("Connection", "close"),
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        *response.headers,
    ]
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    if response.body:
        data += conn.send(h11.Data(data=response.body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


async def _handle(stream: trio.abc.Stream, handler: Handler) -> None:
    async with stream:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            with trio.fail_after(READ_TIMEOUT):
                request = await _read_request(stream, conn)
        except (trio.TooSlowError, h11.RemoteProtocolError, _TooLarge):
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _send(
                    stream,
                    conn,
                    Response(status=400, body=b"bad request\n", content_type="text/plain"),
                )
            return
        except trio.BrokenResourceError:
            return
        if request is None:
            return
        response = await handler(request)
        try:
            await _send(stream, conn, response)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def serve_http(
    handler: Handler,
    *,
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on 127.0.0.1:``port`` (0: any free port, reported to ``task_status``)."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    bound = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        await _handle(stream, handler)

    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(handle, listeners, handler_nursery=nursery)


async def get(
    port: int, path: str, *, token: str | None = None, timeout: float = 2.0
) -> bytes | None:
    """The body of ``GET path`` on 127.0.0.1:``port`` if it answers 200 in time, else None.

    ``token`` is sent as ``Authorization: Bearer`` (a sidecar's admin listener needs it).
    """
    headers = [("Host", "127.0.0.1"), ("Connection", "close")]
    if token is not None:
        headers.append(bearer_header(token))
    request = h11.Request(method="GET", target=path, headers=headers)
    return await _exchange("127.0.0.1", port, request, b"", _read_body, timeout=timeout)


async def post(url: str, body: bytes, content_type: str, *, timeout: float = 5.0) -> int | None:
    """POST ``body`` to an ``http://`` URL; the status, or None when it did not answer in time."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        ("Host", parts.netloc),
        ("Connection", "close"),
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
    ]
    request = h11.Request(method="POST", target=target, headers=headers)
    host = parts.hostname or "127.0.0.1"
    return await _exchange(host, parts.port or 80, request, body, _read_status, timeout=timeout)


async def _exchange(
    host: str,
    port: int,
    request: h11.Request,
    body: bytes,
    read: Callable[[trio.abc.Stream, h11.Connection], Awaitable[T | None]],
    *,
    timeout: float,
) -> T | None:
    """Send one request on a new connection and ``read`` its answer; None on any failure."""
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return None
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            data = conn.send(request)
            if body:
                data += conn.send(h11.Data(data=body))
            try:
                await stream.send_all(data + conn.send(h11.EndOfMessage()))
                return await read(stream, conn)
            except (
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                OSError,
                h11.RemoteProtocolError,
            ):
                return None
    return None


async def _read_status(stream: trio.abc.Stream, conn: h11.Connection) -> int | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            return int(event.status_code)
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _read_body(stream: trio.abc.Stream, conn: h11.Connection) -> bytes | None:
    try:
        message = await _read_message(stream, conn, limit=MAX_RESPONSE_BYTES)
    except _TooLarge:
        return None
    if message is None or not isinstance(message[0], h11.Response):
        return None
    head, body = message[0], message[1]
    return body if head.status_code == 200 else None
