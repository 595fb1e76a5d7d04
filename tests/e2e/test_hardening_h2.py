"""Malformed HTTP/2 requests against a real mesh: each resets its own stream (issue 12).

An HTTP/2 request becomes an HTTP/1.1 request line and Host on its way to an
HTTP/1.1 app, so its pseudo-headers must be what HTTP/1.1 would accept: a
``:method`` token, an origin-form ``:path`` (or ``*`` for OPTIONS), an
``:authority`` that is a valid Host.  A ``content-length`` the DATA disagrees
with (or one on a HEADERS frame that ends the stream) is malformed too.  Each
is answered RST_STREAM PROTOCOL_ERROR on that stream -- never forwarded, never
a GOAWAY -- and the same connection goes on serving a valid request.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("hardening_h2")
    python = sys.executable
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get

mesh = Mesh("hardening-h2")
mesh.service("echo", run="{python} {APPS / "versioned_echo.py"}",
             health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, tls_port=0, routes={{"/": "echo"}})
"""
    )
    with running_mesh(workdir, meshfile) as process:
        yield process


class RawH2:
    """An h2c (prior knowledge) client that sends whatever it is told to."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
            )
        )
        self.h2.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def request(
        self,
        fields: list[tuple[bytes, bytes]],
        *,
        body: bytes | None = None,
    ) -> int:
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self.h2.send_data(stream_id, body, end_stream=True)
        self.flush()
        return stream_id

    def outcome(self, stream_id: int) -> tuple[str, object]:
        """("reset", code), ("response", (status, body)) or ("goaway", code) for ``stream_id``."""
        status, body = 0, b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return ("closed", None)
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    return ("goaway", event.error_code)
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                if isinstance(event, h2.events.StreamReset):
                    return ("reset", event.error_code)
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                if isinstance(event, h2.events.StreamEnded):
                    return ("response", (status, body))
            self.flush()

    def close(self) -> None:
        self.sock.close()


def _fields(
    *, method: bytes = b"GET", path: bytes = b"/ok", authority: bytes = b"echo"
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":authority", authority),
        (b":path", path),
    ]


MALFORMED = {
    "space in :method": (_fields(method=b"GET /a"), None),
    "non-token :method": (_fields(method=b"G(T"), None),
    "space in :path": (_fields(path=b"/a /b"), None),
    "relative :path": (_fields(path=b"raw/rel"), None),
    "fragment in :path": (_fields(path=b"/a#frag"), None),
    "absolute :path": (_fields(path=b"http://evil/x"), None),
    "* :path for GET": (_fields(path=b"*"), None),
    "userinfo in :authority": (_fields(authority=b"u@echo"), None),
    "space in :authority": (_fields(authority=b"echo x"), None),
    "content-length with END_STREAM on HEADERS": (
        [*_fields(method=b"POST"), (b"content-length", b"41")],
        None,
    ),
    "content-length above the DATA": (
        [*_fields(method=b"POST"), (b"content-length", b"41")],
        b"only ten b",
    ),
    "content-length below the DATA": (
        [*_fields(method=b"POST"), (b"content-length", b"3")],
        b"more than three",
    ),
    "content-length not a number": (
        [*_fields(method=b"POST"), (b"content-length", b"4x")],
        b"abcd",
    ),
}


def _ports(mesh: MeshProcess) -> list[tuple[int, bool]]:
    gateway = mesh.status()["gateways"][0]
    return [
        (urlsplit(gateway["url"]).port or 80, False),
        (urlsplit(gateway["tls_url"]).port or 443, True),
    ]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_resets_its_own_stream_only(mesh: MeshProcess, case: str) -> None:
    fields, body = MALFORMED[case]
    for port, tls in _ports(mesh):
        client = RawH2(port, tls=tls)
        try:
            bad = client.request(fields, body=body)
            assert client.outcome(bad) == ("reset", ErrorCodes.PROTOCOL_ERROR), (case, tls)
            good = client.request(_fields(path=b"/after"))
            kind, answer = client.outcome(good)
            assert kind == "response", (case, tls, kind, answer)
            status, data = answer  # type: ignore[misc]
            assert status == 200 and json.loads(data)["path"] == "/after"
        finally:
            client.close()


def test_underscore_names_are_dropped_on_http2_as_on_http1(mesh: MeshProcess) -> None:
    for port, tls in _ports(mesh):
        client = RawH2(port, tls=tls)
        try:
            stream = client.request(
                [*_fields(path=b"/names"), (b"content_length", b"5"), (b"x-kept", b"1")]
            )
            kind, answer = client.outcome(stream)
        finally:
            client.close()
        assert kind == "response"
        status, data = answer  # type: ignore[misc]
        headers = json.loads(data)["headers"]
        assert status == 200 and headers["x-kept"] == "1"
        assert not [name for name in headers if "_" in name or name == "content-length"], headers


def test_an_exact_content_length_is_forwarded(mesh: MeshProcess) -> None:
    port, _ = _ports(mesh)[0]
    client = RawH2(port)
    try:
        stream = client.request(
            [*_fields(method=b"POST", path=b"/sized"), (b"content-length", b"5")], body=b"hello"
        )
        kind, answer = client.outcome(stream)
        assert kind == "response"
        status, data = answer  # type: ignore[misc]
        assert status == 200 and json.loads(data)["body"] == "hello"
    finally:
        client.close()


def test_a_header_list_at_the_limit_reaches_the_app(mesh: MeshProcess) -> None:
    # 60 KiB as HTTP/2 counts it (name + value + 32 a field); the fields the
    # mesh adds on the hop between sidecars never push it over the next limit.
    limit = 60 * 1024
    fields = [*_fields(path=b"/big"), (b"x-big-1", b"b" * 20_000), (b"x-big-2", b"b" * 20_000)]
    used = sum(len(name) + len(value) + 32 for name, value in fields)
    fields.append((b"x-last", b"l" * (limit - used - len(b"x-last") - 32)))
    assert sum(len(name) + len(value) + 32 for name, value in fields) == limit
    for port, tls in _ports(mesh):
        client = RawH2(port, tls=tls)
        try:
            kind, answer = client.outcome(client.request(fields))
        finally:
            client.close()
        assert kind == "response", (tls, kind, answer)
        status, data = answer  # type: ignore[misc]
        assert status == 200 and len(json.loads(data)["headers"]["x-last"]) > 1000, tls
