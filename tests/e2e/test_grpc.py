"""gRPC and HTTP/2 through a real mesh: grpcio, curl --http2-prior-knowledge, h2load.

One mesh for the module: ``rpc`` (a grpcio server, ``protocol="grpc"``) and
``web`` (an HTTP/1.1 app) behind the gateway.  Every request crosses the
gateway sidecar, an mTLS hop between sidecars (HTTP/2 by ALPN for HTTP/2
clients) and the destination's sidecar.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"


def _identity(data: bytes) -> bytes:
    return data


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("grpc")
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get, tcp_connect

mesh = Mesh("grpcmesh")
mesh.service("rpc", run="{sys.executable} {APPS / 'grpc_echo.py'}", protocol="grpc",
             health=tcp_connect(period="100ms"))
mesh.service("web", run="{sys.executable} {APPS / 'reload_echo.py'}",
             health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, routes={{"/test.Echo/": "rpc", "/": "web"}})
"""
    )
    with running_mesh(workdir, meshfile) as process:
        yield process


@pytest.fixture(scope="module")
def channel(mesh: MeshProcess) -> Iterator[grpc.Channel]:
    address = mesh.gateway_url().removeprefix("http://")
    with grpc.insecure_channel(address) as opened:
        yield opened


def test_grpc_unary_through_the_gateway(channel: grpc.Channel) -> None:
    say = channel.unary_unary(
        "/test.Echo/Say", request_serializer=_identity, response_deserializer=_identity
    )
    assert say(b"hello", timeout=10) == b"echo:hello"


def test_grpc_server_streaming_through_the_gateway(channel: grpc.Channel) -> None:
    count = channel.unary_stream(
        "/test.Echo/Count", request_serializer=_identity, response_deserializer=_identity
    )
    assert list(count(b"50", timeout=10)) == [str(n).encode() for n in range(50)]


def test_grpc_error_status_arrives_in_the_trailers(channel: grpc.Channel) -> None:
    fail = channel.unary_unary(
        "/test.Echo/Fail", request_serializer=_identity, response_deserializer=_identity
    )
    with pytest.raises(grpc.RpcError) as raised:
        fail(b"widget", timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "no such thing: widget"


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_http2_client_to_an_http1_app(mesh: MeshProcess) -> None:
    answer = _curl("--http2-prior-knowledge", "-w", "\\n%{http_version}", mesh.gateway_url() + "/x")
    assert answer.returncode == 0, answer.stderr
    body, _, version = answer.stdout.rpartition("\n")
    assert version == "2"
    assert json.loads(body)["service"] == "web"


def test_http1_client_still_works_on_the_same_listener(mesh: MeshProcess) -> None:
    answer = _curl("-w", "\\n%{http_version}", mesh.gateway_url() + "/y")
    body, _, version = answer.stdout.rpartition("\n")
    assert version == "1.1"
    assert json.loads(body)["service"] == "web"


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed")
def test_h2load_burst_has_no_errors(mesh: MeshProcess) -> None:
    result = subprocess.run(
        ["h2load", "-n", "400", "-c", "4", "-m", "10", mesh.gateway_url() + "/z"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "400 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout
