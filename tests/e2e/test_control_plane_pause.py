"""The data plane never waits on the control plane: ``meshkit up`` stopped (SIGSTOP)
under load blocks no request."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.loadgen import Load
from tests.meshproc import REPO, MeshProcess

pytestmark = pytest.mark.e2e

APPS = REPO / "tests" / "e2e" / "apps"
PAUSE = 20.0


def paused_under_load(mesh: MeshProcess, *, pause: float = PAUSE) -> Load:
    """200 req/s through the gateway while the control plane is stopped for ``pause`` s."""
    load = Load(mesh.gateway_url() + "/items", rate=200, clients=16).start()
    try:
        time.sleep(2)
        os.kill(mesh.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(pause)
        finally:
            os.kill(mesh.proc.pid, signal.SIGCONT)
        time.sleep(2)
    finally:
        load.stop()
    return load


def test_a_stopped_control_plane_blocks_no_request(tmp_path: Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(textwrap.dedent(f"""
        from meshkit import Mesh, http_get
        mesh = Mesh("paused")
        mesh.service("echo", run="python {APPS}/versioned_echo.py", health=http_get("/healthz"))
        mesh.gateway(port=0, routes={{"/": "echo"}})
    """))
    mesh = MeshProcess(meshfile, tmp_path, "--no-watch", "--access-log")
    try:
        mesh.wait_ready(timeout=60)
        load = paused_under_load(mesh)
        outcomes = load.outcomes
        during = [o for o in outcomes if 3 < o.at - outcomes[0].at < PAUSE + 1]
        assert len(during) > 100 * PAUSE, f"only {len(during)} requests during the pause"
        assert load.failures() == [], load.failures()[:5]
        assert max(o.latency for o in outcomes) < 2.0
        # What was served is in the gateway's own log file, the terminal view caught up.
        proxy_log = (tmp_path / ".meshkit" / "logs" / "gateway.proxy.log").read_text()
        assert proxy_log.count("GET /items 200") >= len(outcomes) - 50
        deadline = time.monotonic() + 10
        while mesh.output().count("GET /items 200") < len(outcomes) - 50:
            assert time.monotonic() < deadline, "the terminal view did not catch up"
            time.sleep(0.2)
        assert mesh.stop() == 130
        mesh.wait_no_processes(timeout=10)
    finally:
        mesh.kill_everything()


def _sidecars(status: dict[str, object]) -> dict[str, object]:
    """Each instance's sidecar pid, the gateway's included (a restart changes it)."""
    found: dict[str, object] = {}
    for service in status["services"]:  # type: ignore[attr-defined]
        for inst in service["instances"]:
            found[inst["id"]] = inst["sidecar_pid"]
    for gateway in status["gateways"]:  # type: ignore[attr-defined]
        found["gateway"] = gateway["pid"]
    return found


def test_certificates_outlive_a_control_plane_pause_longer_than_their_life(
    tmp_path: Path,
) -> None:
    """6-second certificates, a 20-second pause: traffic flows, no sidecar restarts, and
    every sidecar renews once the control plane answers again."""
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(textwrap.dedent(f"""
        from meshkit import Mesh, http_get
        mesh = Mesh("paused", cert_lifetime="6s")
        mesh.service("echo", run="python {APPS}/versioned_echo.py", health=http_get("/healthz"))
        mesh.gateway(port=0, routes={{"/": "echo"}})
    """))
    mesh = MeshProcess(meshfile, tmp_path, "--no-watch")
    try:
        before = _sidecars(mesh.wait_ready(timeout=60))
        load = paused_under_load(mesh)
        outcomes = load.outcomes
        during = [o for o in outcomes if 3 < o.at - outcomes[0].at < PAUSE + 1]
        assert len(during) > 100 * PAUSE, f"only {len(during)} requests during the pause"
        assert load.failures() == [], (len(load.failures()), load.failures()[:5])
        renewed = mesh.wait_until(
            lambda status: all(
                inst["cert_state"] == "valid"
                for service in status["services"]
                for inst in service["instances"]
            )
            and status["gateways"][0]["cert_state"] == "valid",
            timeout=30,
        )
        assert _sidecars(renewed) == before, "a sidecar was restarted"
        # The certificates did expire during the pause (the grace carried the traffic).
        proxy_log = (tmp_path / ".meshkit" / "logs" / "gateway.proxy.log").read_text()
        assert "serving the one that expired" in proxy_log, proxy_log[-2000:]
        assert "refuses to renew" not in proxy_log
        assert mesh.stop() == 130
        mesh.wait_no_processes(timeout=10)
    finally:
        mesh.kill_everything()
