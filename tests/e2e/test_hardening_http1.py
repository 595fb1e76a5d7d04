"""HTTP/1.1 edges against a real mesh, on every kind of listener (issue 12).

- invalid request targets and chunk framing are 400 from the listener that
  read them, never blamed on the upstream (no ``UPE``, no instance name);
- the header limit applies to what the client sent: a request at the limit
  still reaches the app, whatever the mesh added on the way;
- ``x-forwarded-proto`` is the scheme the edge really served;
- dot segments are removed before routing, as Istio's default normalisation.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("hardening_http1")
    python = sys.executable
    echo = APPS / "roomy_echo.py"
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get

mesh = Mesh("hardening-http1")
mesh.service("echo", run="{python} {echo}", health=http_get("/healthz", period="100ms"))
mesh.service("raw", run="{python} {echo}", health=http_get("/healthz", period="100ms"))
mesh.service("front", run="{python} {echo}", upstreams=["echo"],
             health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, tls_port=0, routes={{"/raw/": "raw", "/": "echo"}})
"""
    )
    with running_mesh(workdir, meshfile) as process:
        yield process


def _listeners(mesh: MeshProcess) -> dict[str, tuple[int, bool]]:
    gateway = mesh.status()["gateways"][0]
    return {
        "gateway": (urlsplit(gateway["url"]).port or 80, False),
        "https gateway": (urlsplit(gateway["tls_url"]).port or 443, True),
        "upstream port": (mesh.instance("front-0")["upstream_ports"]["echo"], False),
    }


def _exchange(port: int, tls: bool, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``, read one response: (status, lower-case headers, body)."""
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
        sock = context.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer after {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split(" ")[1]), headers, body


MALFORMED = {
    "relative target": b"GET raw/rel HTTP/1.1\r\nHost: echo\r\n\r\n",
    "fragment in the target": b"GET /a#frag HTTP/1.1\r\nHost: echo\r\n\r\n",
    "overflowing chunk size": (
        b"POST /up HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffffffffff1\r\nabc\r\n0\r\n\r\n"
    ),
    "LF-only chunk lines": (
        b"POST /up HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"
    ),
    "bare LF in a chunked trailer": (
        b"POST /up HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-T: 1\n\r\n"
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_is_400_and_never_blamed_on_the_upstream(
    mesh: MeshProcess, case: str
) -> None:
    for listener, (port, tls) in _listeners(mesh).items():
        status, headers, body = _exchange(port, tls, MALFORMED[case])
        assert status == 400, (case, listener, status, body)
        assert headers.get("x-meshkit-flag", "-") != "UPE", (case, listener, headers)
        assert b"instance" not in body, (case, listener, body)


def test_a_request_at_the_header_limit_reaches_the_app(mesh: MeshProcess) -> None:
    # 98 of the client's own, Host and Connection: exactly the limit of 100.
    fields = b"".join(b"x-h%d: %d\r\n" % (index, index) for index in range(98))
    for listener, (port, tls) in _listeners(mesh).items():
        raw = b"GET /many HTTP/1.1\r\nHost: echo\r\n" + fields + b"Connection: close\r\n\r\n"
        status, _, body = _exchange(port, tls, raw)
        assert status == 200, (listener, status, body)
        assert json.loads(body)["headers"]["x-h97"] == "97"
        over = b"GET /many HTTP/1.1\r\nHost: echo\r\nx-h98: 1\r\nx-h99: 1\r\n" + fields + b"\r\n"
        assert _exchange(port, tls, over)[0] == 431, listener


def _head_of(size: int) -> bytes:
    """A request whose head (up to its blank line) is ``size`` bytes, in big fields."""
    lines = [b"GET /big HTTP/1.1", b"Host: echo", b"Connection: close"]
    while len(b"\r\n".join(lines)) < size - 20_000:
        lines.append(b"x-big-%d: " % len(lines) + b"b" * 16_000)
    lines.append(b"x-last: ")
    lines[-1] += b"l" * (size - len(b"\r\n".join(lines)))
    block = b"\r\n".join(lines)
    assert len(block) == size
    return block + b"\r\n\r\n"


def test_a_request_at_the_header_byte_limit_reaches_the_app(mesh: MeshProcess) -> None:
    # The fields each hop adds (x-forwarded-*, x-request-id, XFCC, traceparent)
    # never push a request the client kept within 60 KiB over the next hop's limit.
    for listener, (port, tls) in _listeners(mesh).items():
        status, _, body = _exchange(port, tls, _head_of(60 * 1024))
        assert status == 200, (listener, status, body[:300])
        assert len(json.loads(body)["headers"]["x-last"]) > 1000
        assert _exchange(port, tls, _head_of(60 * 1024 + 1))[0] == 431, listener


def test_x_forwarded_proto_is_the_scheme_the_edge_served(mesh: MeshProcess) -> None:
    raw = b"GET /proto HTTP/1.1\r\nHost: echo\r\nX-Forwarded-Proto: %s\r\nConnection: close\r\n\r\n"
    listeners = _listeners(mesh)
    expected = {"gateway": "http", "https gateway": "https", "upstream port": "http"}
    for listener, (port, tls) in listeners.items():
        lie = b"http" if tls else b"https"
        status, _, body = _exchange(port, tls, raw % lie)
        assert status == 200, (listener, body)
        assert json.loads(body)["headers"]["x-forwarded-proto"] == expected[listener], listener


def test_dot_segments_are_removed_before_routing(mesh: MeshProcess) -> None:
    port, tls = _listeners(mesh)["gateway"]
    for target, path in [
        (b"/x/../raw/y", "/raw/y"),
        (b"/raw/./a/b/../c?q=/../", "/raw/a/c"),
        (b"/x/./y", "/x/y"),
    ]:
        raw = b"GET " + target + b" HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n"
        status, _, body = _exchange(port, tls, raw)
        answer = json.loads(body)
        assert status == 200 and answer["path"] == path, (target, answer)
        assert answer["instance"].startswith("raw" if path.startswith("/raw/") else "echo")
