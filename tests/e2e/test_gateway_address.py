"""The gateway keeps its address for the mesh's whole life, and a port in use is a
clear error at start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.meshproc import REPO, MeshProcess

pytestmark = pytest.mark.e2e

APPS = REPO / "tests" / "e2e" / "apps"


def write_meshfile(tmp_path: Path, port: int = 8080) -> Path:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(textwrap.dedent(f"""
        from meshkit import Mesh, http_get
        mesh = Mesh("address")
        mesh.service("echo", run="python {APPS}/versioned_echo.py", health=http_get("/healthz"))
        mesh.gateway(port={port}, routes={{"/": "echo"}})
    """))
    return meshfile


def gateway(mesh: MeshProcess) -> dict[str, object]:
    gateways = mesh.status()["gateways"]
    return gateways[0] if gateways else {}


def test_a_restarted_gateway_listens_on_the_same_port_also_with_gateway_port_0(
    tmp_path: Path,
) -> None:
    mesh = MeshProcess(write_meshfile(tmp_path), tmp_path, "--gateway-port", "0", "--no-watch")
    try:
        mesh.wait_ready(timeout=60)
        before = gateway(mesh)
        os.kill(int(str(before["pid"])), signal.SIGKILL)
        after = mesh.wait_until(
            lambda s: bool(s["gateways"]) and s["gateways"][0]["pid"] not in (None, before["pid"]),
            timeout=60,
        )["gateways"][0]
        assert after["url"] == before["url"]
        reload = subprocess.run(
            [sys.executable, "-m", "meshkit.cli", "reload"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )
        assert reload.returncode == 0, reload.stdout + reload.stderr
        assert gateway(mesh)["url"] == before["url"]
    finally:
        mesh.kill_everything()


def test_a_gateway_port_in_use_is_one_clear_error_at_once(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        mesh = MeshProcess(write_meshfile(tmp_path), tmp_path, "--gateway-port", str(port))
        try:
            started = time.monotonic()
            code = mesh.proc.wait(30)
            assert code == 1
            assert time.monotonic() - started < 20
            output = mesh.output()
            assert f"port {port}" in output and "in use" in output, output
            assert f"pid {os.getpid()}" in output, output
            assert "--gateway-port" in output
            assert "Traceback" not in output
            mesh.wait_no_processes(timeout=5)
        finally:
            mesh.kill_everything()
    finally:
        holder.close()


def test_gateway_tls_port_adds_https_to_a_gateway_declared_without_it(tmp_path: Path) -> None:
    mesh = MeshProcess(
        write_meshfile(tmp_path), tmp_path, "--gateway-port", "0", "--gateway-tls-port", "0",
        "--no-watch",
    )
    try:
        tls_url = str(mesh.wait_ready(timeout=60)["gateways"][0]["tls_url"])
        root = tmp_path / "root.pem"
        shown = subprocess.run(
            [sys.executable, "-m", "meshkit.cli", "ca", "--export", str(root)],
            cwd=tmp_path, capture_output=True, text=True, timeout=30, check=True,
        )
        assert f"curl --cacert {tmp_path}/.meshkit/ca/root.pem {tls_url}/\n" in shown.stdout
        served = subprocess.run(
            ["curl", "-sS", "--cacert", str(root), tls_url + "/"],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert served.returncode == 0, served.stderr
        assert served.stdout
    finally:
        mesh.kill_everything()


def test_a_gateway_port_option_without_a_gateway_is_an_error(tmp_path: Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(textwrap.dedent(f"""
        from meshkit import Mesh
        mesh = Mesh("address")
        mesh.service("echo", run="python {APPS}/versioned_echo.py")
    """))
    for option in ("--gateway-port", "--gateway-tls-port"):
        mesh = MeshProcess(meshfile, tmp_path, option, "0")
        try:
            assert mesh.proc.wait(30) == 1
            output = mesh.output()
            assert f"{option} was given but" in output and "declares no gateway" in output, output
            assert "Traceback" not in output
        finally:
            mesh.kill_everything()
