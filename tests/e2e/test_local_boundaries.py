"""The laptop's own boundaries through a real mesh and curl: a rebinding Host is refused at the
gateway and the admin listeners, admin pages need the mesh's token, and another Unix user
(created here when the test runs as root) is refused at admin, outbound and upstream ports
while the mesh's own user gets through; a process that takes an app's port first is reported
and never receives the app's traffic."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshkit.api.access import read_token
from tests.meshproc import MeshProcess

pytestmark = pytest.mark.e2e

MESHFILE = """\
from meshkit import Mesh
mesh = Mesh("shop")
mesh.service("backend", run="python -m http.server $PORT --bind 127.0.0.1")
mesh.service("client", run="python -m http.server $PORT --bind 127.0.0.1", upstreams=["backend"])
mesh.gateway(port=0, routes={"/": "backend"}, hosts=["shop.test"])
"""


def curl(*args: str, user: str | None = None) -> str:
    """The HTTP status curl saw (``000``: the connection closed without an answer)."""
    env = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        check=False,
        user=user,
        cwd="/",
        env=env,
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    if shutil.which("curl") is None:
        pytest.skip("needs curl (scripts/test installs it)")
    workdir = tmp_path_factory.mktemp("bounds")
    (workdir / "Meshfile.py").write_text(MESHFILE)
    process = MeshProcess(workdir / "Meshfile.py", workdir, "--no-watch")
    try:
        process.wait_ready(timeout=60)
        yield process
        process.stop()
        process.wait_no_processes()
    finally:
        process.kill_everything()


def app_instance(mesh: MeshProcess, service: str) -> dict[str, Any]:
    for entry in mesh.status()["services"]:
        if entry["name"] == service:
            return entry["instances"][0]  # type: ignore[no-any-return]
    raise KeyError(service)


def token_of(mesh: MeshProcess) -> str:
    token = read_token(mesh.workdir / ".meshkit" / "run")
    assert token is not None
    return token


def test_a_rebinding_host_is_refused_and_loopback_and_declared_names_are_served(
    mesh: MeshProcess,
) -> None:
    url = mesh.gateway_url()
    port = url.rsplit(":", 1)[1].rstrip("/")
    assert curl("-H", "Host: evil.example", url) == "403"
    assert curl("--http2-prior-knowledge", "-H", "Host: evil.example", url) == "403"
    assert curl("-H", f"Host: 127.0.0.1:{port}", url) == "200"
    assert curl("-H", f"Host: localhost:{port}", url) == "200"
    assert curl("-H", "Host: shop.test", url) == "200"
    assert curl("--http2-prior-knowledge", "-H", "Host: shop.test", url) == "200"


def test_the_dashboard_and_federation_refuse_a_rebinding_host(mesh: MeshProcess) -> None:
    address = json.loads((mesh.workdir / ".meshkit" / "run" / "observe.json").read_text())
    metrics = f"{address['url']}/metrics"
    bearer = f"Authorization: Bearer {token_of(mesh)}"
    assert curl("-H", bearer, "-H", "Host: evil.example", metrics) == "403"
    assert curl("-H", "Host: evil.example", address["url"] + "/") == "403"
    assert curl("-H", bearer, metrics) == "200"


def test_admin_pages_need_the_token_and_a_loopback_host(mesh: MeshProcess) -> None:
    admin = f"http://127.0.0.1:{app_instance(mesh, 'backend')['admin_port']}/calls"
    bearer = f"Authorization: Bearer {token_of(mesh)}"
    assert curl(admin) == "401"
    assert curl("-X", "DELETE", admin) == "401"
    assert curl("-H", "Authorization: Bearer guessed", admin) == "401"
    assert curl("-H", bearer, "-H", "Host: evil.example", admin) == "403"
    assert curl("-H", bearer, admin) == "200"


@contextlib.contextmanager
def another_user() -> Iterator[str]:
    """A Unix user made for this test and removed after it."""
    if os.geteuid() != 0:
        pytest.skip("creating a second Unix user needs root")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("needs useradd and userdel")
    name = f"mk{uuid.uuid4().hex[:10]}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def test_another_unix_user_is_refused_at_admin_outbound_and_upstream_ports(
    mesh: MeshProcess,
) -> None:
    client = app_instance(mesh, "client")
    admin = f"http://127.0.0.1:{client['admin_port']}/config"
    outbound = ("-x", f"http://127.0.0.1:{client['outbound_port']}", "http://backend/")
    upstream = f"http://127.0.0.1:{client['upstream_ports']['backend']}/"
    bearer = ("-H", f"Authorization: Bearer {token_of(mesh)}")
    with another_user() as name:
        uid = pwd.getpwnam(name).pw_uid
        # Even with the token (as if it leaked), the other user is refused before any HTTP.
        assert curl(*bearer, admin, user=name) == "000"
        assert curl(*outbound, user=name) == "000"
        assert curl(upstream, user=name) == "000"
        assert curl(*bearer, admin) == "200"
        assert curl(*outbound) == "200"
        assert curl(upstream) == "200"
    log = Path(mesh.workdir / ".meshkit" / "logs" / f"{client['id']}.proxy.log").read_text()
    assert f"is owned by uid {uid}, not the mesh's user (uid {os.getuid()})" in log
    assert f"to port {client['outbound_port']}" in log


SQUATTED = """\
from meshkit import Mesh, tcp_connect
mesh = Mesh("squat")
mesh.service("web", run="sleep 3; exec python -m http.server $PORT --bind 127.0.0.1",
             health=tcp_connect(period="1s", failure_threshold=1))
mesh.gateway(port=0, routes={"/": "web"})
"""


def test_a_squatted_port_is_reported_and_never_routed(tmp_path: Path) -> None:
    (tmp_path / "Meshfile.py").write_text(SQUATTED)
    lair = tmp_path / "lair"
    lair.mkdir()
    (lair / "squatter-was-here").write_text("")
    process = MeshProcess(tmp_path / "Meshfile.py", tmp_path, "--no-watch")
    squatter: subprocess.Popen[bytes] | None = None
    try:
        # The app is started (meshkit checked its port was free) and waits 3 s before
        # binding $PORT: take the port in between, as a squatter would.
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, IndexError, KeyError):
                web = process.status()["services"][0]["instances"][0]
                port = web["port"] if web["pid"] else None
            time.sleep(0.05)
        assert port is not None, process.output()
        squatter = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=lair,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        held = f"port {port} is held by pid {squatter.pid}"

        def reported(document: dict[str, Any]) -> bool:
            return any(held in error for error in document["errors"])

        process.wait_until(reported, timeout=40)
        url = process.wait_until(lambda s: s["gateways"] and s["gateways"][0].get("url"))
        gateway = url["gateways"][0]["url"] + "/"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            web = process.status()["services"][0]["instances"][0]
            # Healthy only once it moved to a port of its own (a restart picks a fresh one).
            assert web["state"] != "healthy" or web["port"] != port, web
            answer = subprocess.run(
                ["curl", "-sS", "--max-time", "10", gateway], capture_output=True, check=False
            )
            assert b"squatter-was-here" not in answer.stdout
            time.sleep(0.2)
        process.stop()
        process.wait_no_processes()
    finally:
        if squatter is not None:
            squatter.kill()
            squatter.wait()
        process.kill_everything()
