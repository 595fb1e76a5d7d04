"""An h2c-only test app (prior knowledge) on 127.0.0.1:$PORT, built on meshkit's h2conn.

Every request is answered ``200`` with JSON naming the protocol it arrived on
(always ``"2"``), the method, the path, the body length and the request
headers.  ``/trailers`` instead streams ``part-1\\npart-2\\n`` and ends with the
trailers ``x-checksum: 12`` and ``x-done: yes``.
"""

from __future__ import annotations

import functools
import json
import os

import trio

from meshkit.proxy.codec.messages import ResponseHead
from meshkit.proxy.net.h2conn import Http2Connection, Http2Stream


async def answer(stream: Http2Stream) -> None:
    assert stream.head is not None
    body = b"".join([chunk async for chunk in stream.receive_body()])
    path = stream.head.target.split(b"?")[0]
    if path.endswith(b"/trailers"):
        await stream.send_head(ResponseHead(status=200, headers=[(b"content-type", b"text/plain")]))
        await stream.send_body(b"part-1\n")
        await stream.send_body(b"part-2\n")
        await stream.send_trailers([(b"x-checksum", b"12"), (b"x-done", b"yes")])
        return
    document = {
        "protocol": "2",
        "method": stream.head.method.decode(),
        "path": path.decode(),
        "body_bytes": len(body),
        "headers": {name.decode(): value.decode() for name, value in stream.head.headers},
    }
    reply = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(reply))]
    await stream.send_head(ResponseHead(status=200, headers=headers))
    await stream.send_body(reply, end_stream=True)


async def handle_connection(transport: trio.SocketStream) -> None:
    connection = Http2Connection(transport, client_side=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        async for stream in connection.accept_streams():
            nursery.start_soon(answer, stream)


def main() -> None:
    serve = functools.partial(trio.serve_tcp, handle_connection, int(os.environ["PORT"]))
    trio.run(functools.partial(serve, host="127.0.0.1"))


if __name__ == "__main__":
    main()
