"""Runtime faults, the call log and restarts, end to end: ``meshkit up`` with real sidecars.

The fault tests need the data path (the caller-side sidecar applying
``ProxyConfig.runtime_faults``); the call log and restart tests need only the
control plane and the inbound sidecars.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshkit.testing.calls import clear_calls, read_calls
from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent / "apps" / "reload_echo.py"
MESHFILE = f"""\
from meshkit import Mesh, http_get

mesh = Mesh("faults")
mesh.service("a", run="{sys.executable} {APP}", health=http_get("/healthz", period="100ms"))
mesh.service("b", run="{sys.executable} {APP}", health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, routes={{"/": "a"}})
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("faults")
    (workdir / "Meshfile.py").write_text(MESHFILE)
    with running_mesh(workdir, workdir / "Meshfile.py", gateway_synced=True) as running:
        yield running


def cli(mesh: MeshProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit.cli", *argv],
        cwd=mesh.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def get(mesh: MeshProcess, path: str, **headers: str) -> tuple[int, dict[str, str], float]:
    """``GET path`` through the gateway: status, headers, seconds it took."""
    port = int(mesh.gateway_url().rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.monotonic()
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders()), time.monotonic() - started
    finally:
        connection.close()


def test_meshkit_fault_aborts_then_clears(mesh: MeshProcess) -> None:
    injected = cli(mesh, "fault", "a", "--abort", "503", "--duration", "2m")
    assert injected.returncode == 0, injected.stderr
    assert "f" in injected.stdout and "abort 503" in injected.stdout
    assert "not every sidecar" not in injected.stdout
    status, headers, _ = get(mesh, "/work")
    assert status == 503
    assert {k.lower(): v for k, v in headers.items()}.get("x-meshkit-flag") == "FI"
    listed = cli(mesh, "fault", "--list")
    assert "a abort 503 on 100% of requests" in listed.stdout
    assert "fault " in cli(mesh, "status").stdout
    cleared = cli(mesh, "fault", "a", "--clear")
    assert cleared.returncode == 0 and "cleared" in cleared.stdout, cleared.stderr
    after = get(mesh, "/work")
    assert after[0] == 200, (after, cleared.stdout, mesh.output()[-3000:])
    assert cli(mesh, "fault", "--list").stdout.strip() == "meshkit: no faults in force"


def test_an_injected_delay_is_measured_at_the_client(mesh: MeshProcess) -> None:
    injected = cli(mesh, "fault", "a", "--delay", "400ms")
    assert injected.returncode == 0, injected.stderr
    try:
        status, _, took = get(mesh, "/slow")
        assert status == 200 and took >= 0.4
    finally:
        cli(mesh, "fault", "a", "--clear")
    status, _, took = get(mesh, "/fast")
    assert status == 200 and took < 0.4


def test_a_fault_with_a_path_applies_only_under_it(mesh: MeshProcess) -> None:
    injected = cli(mesh, "fault", "a", "--abort", "503", "--path-prefix", "/only")
    assert injected.returncode == 0, injected.stderr
    try:
        assert get(mesh, "/only/this")[0] == 503
        assert get(mesh, "/other")[0] == 200
    finally:
        cli(mesh, "fault", "a", "--clear")


def test_meshkit_fault_refuses_bad_input_with_reasons(mesh: MeshProcess) -> None:
    unknown = cli(mesh, "fault", "nope", "--abort", "503")
    assert unknown.returncode == 1
    assert "no service called 'nope'" in unknown.stderr and "a, b" in unknown.stderr
    bad = cli(mesh, "fault", "a", "--delay", "two")
    assert bad.returncode == 2 and "--delay 'two' is not a duration" in bad.stderr


def test_calls_show_the_gateway_as_caller_and_nothing_for_an_unreached_service(
    mesh: MeshProcess,
) -> None:
    status_document: dict[str, Any] = mesh.status()
    clear_calls(status_document, "a", run_dir=mesh.run_dir)
    started = time.time()
    assert get(mesh, "/seen?q=1", **{"x-request-id": "req-42"})[0] == 200
    [call] = [c for c in read_calls(mesh.status(), "a", run_dir=mesh.run_dir, since=started) if c.path == "/seen?q=1"]
    assert (call.method, call.status, call.caller, call.flag) == ("GET", 200, "gateway", "-")
    assert call.caller_identity == "spiffe://meshkit.local/ns/faults/sa/gateway"
    assert call.request_id == "req-42"
    assert call.duration_ms > 0
    assert read_calls(mesh.status(), "b", run_dir=mesh.run_dir) == []


def test_meshkit_restart_replaces_the_instances(mesh: MeshProcess) -> None:
    before = mesh.instance("a-0")
    restarted = cli(mesh, "restart", "a")
    assert restarted.returncode == 0, restarted.stderr + mesh.output()
    assert "restarted every instance of a" in restarted.stdout
    after = [i for s in mesh.status()["services"] if s["name"] == "a" for i in s["instances"]]
    assert [i["state"] for i in after] == ["healthy"]
    assert after[0]["pid"] != before["pid"] and after[0]["generation"] == before["generation"] + 1
    assert get(mesh, "/after-restart")[0] == 200
    unknown = cli(mesh, "restart", "nope")
    assert unknown.returncode == 1 and "its services: a, b" in unknown.stderr


def test_a_fault_a_sidecar_did_not_apply_fails_naming_it(mesh: MeshProcess) -> None:
    """A stopped sidecar cannot acknowledge: the CLI exits 1 and the handle raises, naming it."""
    import os
    import signal
    import types

    from meshkit.testing.handle import MeshHandle, MeshNotInSync

    [b_instance] = [i for s in mesh.status()["services"] if s["name"] == "b" for i in s["instances"]]
    sidecar = int(b_instance["sidecar_pid"])
    os.kill(sidecar, signal.SIGSTOP)
    try:
        injected = cli(mesh, "fault", "a", "--abort", "503", "--duration", "2m")
        assert injected.returncode == 1, injected.stdout
        assert b_instance["id"] in injected.stderr
        assert "not every sidecar has applied it" in injected.stderr
        handle = MeshHandle(
            types.SimpleNamespace(control_socket=mesh.control_socket),  # type: ignore[arg-type]
            gateway_routes={},
        )
        with pytest.raises(MeshNotInSync, match=b_instance["id"]):
            handle.fault("a", abort=503, duration="2m")
    finally:
        os.kill(sidecar, signal.SIGCONT)
        cli(mesh, "fault", "a", "--clear")
    assert cli(mesh, "fault", "--list").stdout.strip() == "meshkit: no faults in force"
