"""Real HTTP/2 clients (h2load, nghttp, curl) against a tiny h2c server built on h2conn."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Awaitable, Callable

import pytest
import trio

from meshkit.proxy.codec.messages import ResponseHead
from meshkit.proxy.net.h2conn import Http2Connection, Http2Stream

pytestmark = pytest.mark.e2e


async def answer(stream: Http2Stream) -> None:
    body = b"".join([chunk async for chunk in stream.receive_body()])
    reply = b"hello " + (stream.head.target if stream.head else b"") + b" %d\n" % len(body)
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(reply))]
    await stream.send_head(ResponseHead(status=200, headers=headers))
    await stream.send_body(reply, end_stream=True)


async def handle_connection(transport: trio.SocketStream) -> None:
    connection = Http2Connection(transport, client_side=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        async for stream in connection.accept_streams():
            nursery.start_soon(answer, stream)


async def with_server(check: Callable[[int], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handle_connection, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        await check(port)
        nursery.cancel_scope.cancel()


async def run_client(*argv: str) -> str:
    with trio.fail_after(30):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    return output


async def test_h2load_gets_100_responses_without_errors() -> None:
    async def check(port: int) -> None:
        output = await run_client(
            "h2load", "-n", "100", "-c", "2", "-m", "10", f"http://127.0.0.1:{port}/"
        )
        assert "100 succeeded, 0 failed, 0 errored, 0 timeout" in output, output
        assert "status codes: 100 2xx" in output, output

    await with_server(check)


async def test_nghttp_posts_a_body() -> None:
    async def check(port: int) -> None:
        output = await run_client("nghttp", "-s", f"http://127.0.0.1:{port}/nghttp")
        assert "hello /nghttp 0" in output, output

    await with_server(check)


async def test_curl_with_prior_knowledge() -> None:
    async def check(port: int) -> None:
        output = await run_client(
            "curl",
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            "%{http_version} %{http_code}",
            "--data-binary",
            "abc",
            f"http://127.0.0.1:{port}/curl",
        )
        assert output == "hello /curl 3\n2 200", output

    await with_server(check)


def test_no_client_process_is_left_behind() -> None:
    # Only this worker's children: another test worker may be running h2load right now.
    leftover = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-x", "h2load|nghttp"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert leftover.stdout == ""
