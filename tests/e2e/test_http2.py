"""HTTP/2 through a real mesh: the proofs issue 5 asks for beyond test_grpc.py.

One mesh for the module, every request crossing the gateway sidecar, an mTLS
hop between sidecars and the destination's sidecar:

- ``bulk`` (HTTP/1.1) streams 100 MB to a deliberately slow HTTP/2 reader
  while both sidecars' peak memory stays bounded;
- ``rpc`` (gRPC) is called through ``caller``'s upstream listener, the
  plaintext loopback port an app dials as ``RPC_ADDR``;
- ``h2app`` (``protocol="http2"``, h2c only) answers HTTP/1.1 clients, and
  its response trailers reach an HTTP/1.1 client that sent ``te: trailers``;
- ``flaky`` fails each path once, and its route retries: an HTTP/2 client
  sees only the retried answer.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"
HUNDRED_MB = 100 * 1000 * 1000
PEAK_RSS_LIMIT_MIB = 80


def _identity(data: bytes) -> bytes:
    return data


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("http2")
    python = sys.executable
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get, retry, tcp_connect

mesh = Mesh("h2mesh")
mesh.service("bulk", run="{python} {APPS / "bulk.py"}", health=http_get("/healthz", period="100ms"))
mesh.service("rpc", run="{python} {APPS / "grpc_echo.py"}", protocol="grpc",
             health=tcp_connect(period="100ms"))
mesh.service("caller", run="{python} {APPS / "versioned_echo.py"}", upstreams=["rpc"],
             health=http_get("/healthz", period="100ms"))
mesh.service("h2app", run="{python} {APPS / "h2_echo.py"}", protocol="http2",
             health=tcp_connect(period="100ms"))
mesh.service("flaky", run="{python} {APPS / "fail_once.py"}",
             health=http_get("/healthz", period="100ms"))
mesh.route("flaky", retry=retry(attempts=2, retry_on=["5xx"]))
mesh.gateway(port=0, routes={{"/bytes": "bulk", "/h2/": "h2app", "/flaky/": "flaky"}})
"""
    )
    with running_mesh(workdir, meshfile) as process:
        yield process


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def _slow_h2_download(url: str, *, pause_every: int, pause: float) -> tuple[int, int]:
    """GET ``url`` over h2c with a 64 KiB window, pausing ``pause`` s every ``pause_every``
    bytes: (status, body bytes).  A window is granted back only as bytes are read."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    connection.initiate_connection()
    stream_id = connection.get_next_available_stream_id()
    connection.send_headers(
        stream_id,
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", f"{host}:{port}".encode()),
            (b":path", (parts.path + ("?" + parts.query if parts.query else "")).encode()),
        ],
        end_stream=True,
    )
    status, received, next_pause = 0, 0, pause_every
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(connection.data_to_send())
        time.sleep(pause)  # the response fills every window on the way before we read
        while True:
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed after {received} bytes")
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    received += len(event.data)
                    connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset after {received} bytes: {event}")
                elif isinstance(event, h2.events.StreamEnded):
                    sock.sendall(connection.data_to_send())
                    return status, received
            sock.sendall(connection.data_to_send())
            if received >= next_pause:
                time.sleep(pause)
                next_pause += pause_every


def test_100_mb_to_a_slow_http2_reader_with_bounded_sidecar_memory(mesh: MeshProcess) -> None:
    url = mesh.gateway_url() + f"/bytes?n={HUNDRED_MB}"
    status, received = _slow_h2_download(url, pause_every=10_000_000, pause=0.3)
    assert (status, received) == (200, HUNDRED_MB)
    gateway_pid = mesh.status()["gateways"][0]["pid"]
    inbound_pid = mesh.instance("bulk-0")["sidecar_pid"]
    for role, pid in (("gateway", gateway_pid), ("bulk's inbound sidecar", inbound_pid)):
        peak = _peak_rss_mib(pid)
        assert peak < PEAK_RSS_LIMIT_MIB, f"{role} peaked at {peak:.0f} MiB: it buffered the body"


def test_grpc_through_an_apps_upstream_listener(mesh: MeshProcess) -> None:
    port = mesh.instance("caller-0")["upstream_ports"]["rpc"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        say = channel.unary_unary(
            "/test.Echo/Say", request_serializer=_identity, response_deserializer=_identity
        )
        assert say(b"from caller", timeout=10) == b"echo:from caller"
        count = channel.unary_stream(
            "/test.Echo/Count", request_serializer=_identity, response_deserializer=_identity
        )
        assert list(count(b"20", timeout=10)) == [str(n).encode() for n in range(20)]
        fail = channel.unary_unary(
            "/test.Echo/Fail", request_serializer=_identity, response_deserializer=_identity
        )
        with pytest.raises(grpc.RpcError) as raised:
            fail(b"gadget", timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert raised.value.details() == "no such thing: gadget"


def test_http1_client_to_an_http2_app(mesh: MeshProcess) -> None:
    answer = _curl("-w", "\\n%{http_version} %{http_code}", mesh.gateway_url() + "/h2/plain")
    assert answer.returncode == 0, answer.stderr
    body, _, version = answer.stdout.rpartition("\n")
    assert version == "1.1 200"
    document = json.loads(body)
    assert (document["protocol"], document["method"], document["path"]) == ("2", "GET", "/h2/plain")
    assert "connection" not in document["headers"]


def test_http1_client_posts_bodies_to_an_http2_app(mesh: MeshProcess) -> None:
    sized = _curl("--data-binary", "x" * 70_000, mesh.gateway_url() + "/h2/sized")
    assert json.loads(sized.stdout)["body_bytes"] == 70_000, sized.stderr
    chunked = _curl(
        "-H",
        "transfer-encoding: chunked",
        "--data-binary",
        "y" * 5000,
        mesh.gateway_url() + "/h2/chunked",
    )
    document = json.loads(chunked.stdout)
    assert (document["method"], document["body_bytes"]) == ("POST", 5000), chunked.stderr


def _raw_http1_get(url: str, *extra_headers: str) -> bytes:
    parts = urlsplit(url)
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        + "".join(f"{header}\r\n" for header in extra_headers)
        + "Connection: close\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(request.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_response_trailers_reach_an_http1_client_that_accepts_them(mesh: MeshProcess) -> None:
    response = _raw_http1_get(mesh.gateway_url() + "/h2/trailers", "TE: trailers")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    assert b"transfer-encoding: chunked" in head.lower(), response
    assert body.endswith(b"0\r\nx-checksum: 12\r\nx-done: yes\r\n\r\n"), body
    assert b"part-1\n" in body and b"part-2\n" in body


def test_response_trailers_are_dropped_for_an_http1_client_without_te(mesh: MeshProcess) -> None:
    response = _raw_http1_get(mesh.gateway_url() + "/h2/trailers")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    assert b"x-checksum" not in body
    assert b"part-1\n" in body and b"part-2\n" in body


def test_a_retry_over_http2(mesh: MeshProcess) -> None:
    answer = _curl(
        "--http2-prior-knowledge",
        "-w",
        "\\n%{http_version} %{http_code}",
        mesh.gateway_url() + "/flaky/once",
    )
    assert answer.returncode == 0, answer.stderr
    body, _, version = answer.stdout.rpartition("\n")
    assert version == "2 200", answer.stdout
    assert json.loads(body) == {"path": "/flaky/once", "attempts": 2}
