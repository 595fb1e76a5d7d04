"""An app whose ``$PORT`` another process took while it was down restarts on a fresh
port, and callers follow it through the registry (issue 13)."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.meshproc import REPO, MeshProcess

pytestmark = pytest.mark.e2e

APPS = REPO / "tests" / "e2e" / "apps"


def grab(port: int, timeout: float) -> socket.socket:
    """Listen on ``port`` as soon as it is free (within ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock
        except OSError:
            sock.close()
            assert time.monotonic() < deadline, f"port {port} never came free"
            time.sleep(0.01)


def test_an_app_whose_port_was_taken_restarts_on_a_fresh_one(tmp_path: Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(textwrap.dedent(f"""
        from meshkit import Mesh, http_get, restart_policy
        mesh = Mesh("ports")
        mesh.service("echo", run="python {APPS}/versioned_echo.py", health=http_get("/healthz"),
                     restart_policy=restart_policy("always", backoff="2s"))
        mesh.gateway(port=0, routes={{"/": "echo"}})
    """))
    mesh = MeshProcess(meshfile, tmp_path, "--no-watch")
    holder = None
    try:
        status = mesh.wait_ready(timeout=60)
        (echo,) = status["services"][0]["instances"]
        os.killpg(os.getpgid(echo["pid"]), signal.SIGKILL)
        holder = grab(echo["port"], timeout=1.5)  # before its restart, 2 s later
        healthy = mesh.wait_until(
            lambda s: s["services"][0]["instances"][0]["state"] == "healthy"
            and s["services"][0]["instances"][0]["restarts"] >= 1,
            timeout=60,
        )["services"][0]["instances"][0]
        assert healthy["port"] != echo["port"]
        assert f"port {echo['port']} is held by pid {os.getpid()}" in mesh.output()
        deadline = time.monotonic() + 30
        while True:  # the gateway reaches it through the sidecar's new app port
            try:
                with urllib.request.urlopen(mesh.gateway_url() + "/", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the gateway never reached the restarted app"
                time.sleep(0.2)
        assert mesh.stop() == 130
        mesh.wait_no_processes(timeout=10)
    finally:
        if holder is not None:
            holder.close()
        mesh.kill_everything()
