"""``meshkit up`` on the example shop, end to end, with real processes and curl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.meshproc import MeshProcess, example_meshfile

pytestmark = pytest.mark.e2e


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, check=False
    )


def test_gateway_serves_a_page_built_through_the_mesh(shop: MeshProcess) -> None:
    result = curl("-i", shop.gateway_url() + "/")
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), head
    assert "<h1>shop</h1>" in body
    assert "teapot" in body and "*****" in body  # catalog and reviews both answered


def test_status_json_describes_every_instance(shop: MeshProcess) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "status", "--json"],
        cwd=shop.workdir, capture_output=True, text=True, check=True,
    )
    status = json.loads(out.stdout)
    assert status["ready"] is True
    assert status["gateways"][0]["url"].startswith("http://127.0.0.1:")
    ids = {i["id"] for s in status["services"] for i in s["instances"]}
    assert {"catalog-v1-0", "catalog-v1-1", "catalog-v2-0", "reviews-0", "frontend-0"} <= ids
    for service in status["services"]:
        for inst in service["instances"]:
            assert inst["state"] == "healthy"
            assert inst["pid"] > 0 and inst["sidecar_pid"] > 0
            assert inst["port"] != inst["inbound_port"]
    table = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "status"],
        cwd=shop.workdir, capture_output=True, text=True, check=True,
    ).stdout
    assert "catalog-v1-1" in table and "healthy" in table


def test_outbound_proxy_reaches_services_by_name(shop: MeshProcess) -> None:
    # HTTP_PROXY semantics: the frontend's outbound listener routes by Host...
    frontend = shop.instance("frontend-0")
    proxy = f"http://127.0.0.1:{frontend['outbound_port']}"
    items = curl("-x", proxy, "http://catalog/items")
    assert items.returncode == 0 and '"teapot"' in items.stdout
    # ...and an unknown service through the frontend's outbound proxy is a clear 404.
    frontend = shop.instance("frontend-0")
    unknown = curl("-i", "-x", f"http://127.0.0.1:{frontend['outbound_port']}", "http://nosuch/")
    assert " 404 " in unknown.stdout.splitlines()[0]
    assert "nosuch" in unknown.stdout


def test_a_killed_app_is_restarted_and_serves_again(shop: MeshProcess) -> None:
    before = shop.instance("reviews-0")
    os.kill(before["pid"], signal.SIGKILL)
    after = shop.wait_until(
        lambda s: any(
            i["id"] == "reviews-0" and i["restarts"] >= before["restarts"] + 1
            and i["state"] == "healthy"
            for svc in s["services"] for i in svc["instances"]
        ),
        timeout=30,
    )
    assert after["ready"]
    assert shop.instance("reviews-0")["pid"] != before["pid"]
    result = curl(shop.gateway_url() + "/")
    assert "*****" in result.stdout


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    mesh = MeshProcess(example_meshfile(tmp_path), tmp_path)
    try:
        mesh.wait_ready(timeout=60)
        assert len(mesh.marked()) >= 10  # control plane, guardian, sidecars, apps
        assert mesh.stop(signal.SIGINT) == 130
        mesh.wait_no_processes(timeout=5)
        assert not mesh.control_socket.exists()
    finally:
        mesh.kill_everything()


def test_meshkit_down_stops_the_mesh_with_exit_0(tmp_path: Path) -> None:
    mesh = MeshProcess(example_meshfile(tmp_path), tmp_path, "reviews")
    try:
        mesh.wait_ready(timeout=60)
        down = subprocess.run(
            [sys.executable, "-m", "meshkit.cli", "down"],
            cwd=tmp_path, capture_output=True, text=True, timeout=30,
        )
        assert down.returncode == 0, down.stderr
        assert mesh.proc.wait(10) == 0
        mesh.wait_no_processes(timeout=5)
    finally:
        mesh.kill_everything()


def test_sigkill_of_the_control_plane_leaves_nothing(tmp_path: Path) -> None:
    mesh = MeshProcess(example_meshfile(tmp_path), tmp_path, "catalog")
    try:
        mesh.wait_ready(timeout=60)
        assert len(mesh.marked()) >= 4
        mesh.proc.kill()
        mesh.proc.wait()
        started = time.monotonic()
        mesh.wait_no_processes(timeout=5)
        assert time.monotonic() - started < 5
    finally:
        mesh.kill_everything()
