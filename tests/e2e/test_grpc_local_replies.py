"""The mesh's own answers reach grpcio as gRPC statuses, through a real mesh.

``rpc`` is a grpcio server; ``down`` never becomes healthy (no instance to
route to).  Every local reply to a gRPC request is a trailers-only response
(HTTP 200, ``grpc-status``, ``grpc-message``, the flag in the metadata).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.meshproc import MeshProcess

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"


def _identity(data: bytes) -> bytes:
    return data


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("grpcreplies")
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, tcp_connect

mesh = Mesh("grpcreplies")
mesh.service("rpc", run="{sys.executable} {APPS / "grpc_echo.py"}", protocol="grpc",
             health=tcp_connect(period="100ms"))
mesh.service("down", run="{sys.executable} -c 'import time; time.sleep(600)'", protocol="grpc",
             health=tcp_connect(period="100ms"))
mesh.gateway(port=0, routes={{"/test.Echo/": "rpc", "/test.Down/": "down"}})
"""
    )
    process = MeshProcess(meshfile, workdir)
    try:
        deadline = time.monotonic() + 60
        while not process.control_socket.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        process.wait_until(
            lambda s: (
                s["gateways"]
                and s["gateways"][0]["sync"] == "SYNCED"
                and any(
                    i["state"] == "healthy"
                    for svc in s["services"]
                    if svc["name"] == "rpc"
                    for i in svc["instances"]
                )
            ),
            timeout=60,
        )
        yield process
    finally:
        process.kill_everything()


@pytest.fixture(scope="module")
def channel(mesh: MeshProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(mesh.gateway_url().removeprefix("http://")) as opened:
        say = opened.unary_unary(
            "/test.Echo/Say", request_serializer=_identity, response_deserializer=_identity
        )
        deadline = time.monotonic() + 60
        while True:  # until the gateway has rpc's endpoint
            try:
                say(b"ready", timeout=10)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield opened


def _call(channel: grpc.Channel, method: str) -> grpc.RpcError:
    call = channel.unary_unary(
        method, request_serializer=_identity, response_deserializer=_identity
    )
    with pytest.raises(grpc.RpcError) as raised:
        call(b"x", timeout=10)
    return raised.value


def _flag(error: grpc.RpcError) -> str:
    return dict(error.trailing_metadata() or ()).get("x-meshkit-flag", "")


def _cli(mesh: MeshProcess, *argv: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", *argv],
        cwd=mesh.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_no_gateway_route_is_unimplemented(channel: grpc.Channel) -> None:
    error = _call(channel, "/test.Nowhere/Call")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "no gateway route matches '/test.Nowhere/Call'" in error.details()
    assert _flag(error) == "NR"


def test_no_healthy_instance_is_unavailable(channel: grpc.Channel) -> None:
    error = _call(channel, "/test.Down/Call")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "no healthy instance" in error.details()
    assert _flag(error) == "UH"


@pytest.mark.parametrize(
    ("abort", "code"),
    [
        ("unavailable", grpc.StatusCode.UNAVAILABLE),
        ("503", grpc.StatusCode.UNAVAILABLE),
        ("403", grpc.StatusCode.PERMISSION_DENIED),
        ("400", grpc.StatusCode.INTERNAL),
    ],
)
def test_fault_aborts_arrive_as_grpc_statuses(
    mesh: MeshProcess, channel: grpc.Channel, abort: str, code: grpc.StatusCode
) -> None:
    _cli(mesh, "fault", "rpc", "--abort", abort, "--duration", "2m")
    try:
        error = _call(channel, "/test.Echo/Say")
        assert error.code() == code, error
        assert "aborted by fault injection" in error.details()
        assert _flag(error) == "FI"
    finally:
        _cli(mesh, "fault", "rpc", "--clear")
    say = channel.unary_unary(
        "/test.Echo/Say", request_serializer=_identity, response_deserializer=_identity
    )
    assert say(b"again", timeout=10) == b"echo:again"
