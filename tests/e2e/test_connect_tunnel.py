"""CONNECT on the outbound listener, against a real mesh (issue 12).

grpcio, like many clients, honours ``http_proxy`` by sending ``CONNECT host:port``
to the proxy.  The ``caller`` app has nothing but the environment the mesh
gives it (``HTTP_PROXY``: its sidecar's outbound listener) and dials the gRPC
service ``rpc`` by its mesh name; the sidecar tunnels the connection as one of
its outbound listener, so each call inside is routed, secured (mTLS) and
counted like any other.  A CONNECT to a name that is not a mesh service is 403.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("connect")
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get, tcp_connect

mesh = Mesh("tunnels")
mesh.service("rpc", run="{sys.executable} {APPS / "grpc_echo.py"}", protocol="grpc",
             health=tcp_connect(period="100ms"))
mesh.service("caller", run="{sys.executable} {APPS / "grpc_caller.py"}",
             health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, routes={{"/": "caller"}})
"""
    )
    with running_mesh(workdir, meshfile, gateway_synced=True) as process:
        yield process


def _get(mesh: MeshProcess, path: str) -> object:
    address = mesh.gateway_url().removeprefix("http://")
    connection = http.client.HTTPConnection(address, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, response.getheaders(), body)
        return json.loads(body)
    finally:
        connection.close()


def _outbound_port(mesh: MeshProcess) -> int:
    port: int = mesh.instance("caller-0")["outbound_port"]
    return port


def test_grpcio_with_only_http_proxy_reaches_a_service_by_its_mesh_name(
    mesh: MeshProcess,
) -> None:
    assert _get(mesh, "/call?target=rpc:50051&say=tunnel") == {"reply": "echo:tunnel"}
    # Again, on a fresh channel: each CONNECT is its own tunnel.
    assert _get(mesh, "/call?target=rpc:50051&say=again") == {"reply": "echo:again"}


def test_connect_to_a_name_outside_the_mesh_is_refused(mesh: MeshProcess) -> None:
    answer = _get(mesh, "/call?target=example.com:443")
    assert isinstance(answer, dict) and answer["code"] == "UNAVAILABLE", answer
    with socket.create_connection(("127.0.0.1", _outbound_port(mesh)), timeout=10) as sock:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 403 "), received
    assert b"only services of mesh 'tunnels' are tunnelled" in received


def test_http1_inside_a_tunnel_is_routed_like_any_outbound_request(mesh: MeshProcess) -> None:
    with socket.create_connection(("127.0.0.1", _outbound_port(mesh)), timeout=10) as sock:
        sock.sendall(
            b"CONNECT caller:80 HTTP/1.1\r\nHost: caller:80\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: caller\r\nConnection: close\r\n\r\n"
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    established, _, inner = received.partition(b"\r\n\r\n")
    assert established.startswith(b"HTTP/1.1 200 "), received
    assert inner.startswith(b"HTTP/1.1 200 ") and inner.endswith(b'{"ok": true}'), inner
