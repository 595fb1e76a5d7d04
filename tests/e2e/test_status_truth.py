"""``meshkit status`` says why: the reason of a replacement, the names that agree, the
last exit status and log of a crashing instance, the port an app really bound, in
``--json`` and in the table.  ``meshkit routes`` lists what it can show and tells
the transport of each listener and the retry policy of each route."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.meshproc import REPO, MeshProcess

pytestmark = pytest.mark.e2e

APPS = REPO / "tests" / "e2e" / "apps"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def meshkit_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit.cli", *argv],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


def instances(status: dict[str, Any], service: str) -> list[dict[str, Any]]:
    return [i for s in status["services"] if s["name"] == service for i in s["instances"]]


def test_status_tells_reasons_names_exits_and_bound_ports(tmp_path: Path) -> None:
    elsewhere = free_port()
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(textwrap.dedent(f"""
        from meshkit import Mesh, http_get, restart_policy, retry
        mesh = Mesh("truth")
        mesh.service("echo", run="python {APPS}/versioned_echo.py", health=http_get("/healthz"))
        mesh.route("echo", retry=retry(attempts=3, retry_on=["5xx", "reset"]))
        mesh.service("crasher", run="echo 'boom: no database'; exit 3",
                     restart_policy=restart_policy("always", backoff="200ms", max_backoff="1s"))
        mesh.service("astray", run="python -m http.server {elsewhere} --bind 127.0.0.1")
        mesh.gateway(port=0, routes={{"/": "echo"}})
    """))
    mesh = MeshProcess(meshfile, tmp_path, "--no-watch")
    try:
        deadline = time.monotonic() + 30
        while not mesh.control_socket.exists():
            assert time.monotonic() < deadline and mesh.proc.poll() is None, mesh.output()
            time.sleep(0.1)
        status = mesh.wait_until(
            lambda s: bool(s["gateways"]) and instances(s, "echo")[0]["state"] == "healthy"
            and instances(s, "crasher")[0]["restarts"] >= 2
            and instances(s, "astray")[0]["listening_ports"] == [elsewhere],
            timeout=60,
        )
        crasher = instances(status, "crasher")[0]
        assert crasher["exit_status"] == 3
        assert "boom: no database" in crasher["log_tail"]
        astray = instances(status, "astray")[0]
        assert any(str(elsewhere) in error and "PORT" in error for error in status["errors"])
        assert astray["port"] != elsewhere
        table = meshkit_cli("status", cwd=tmp_path)
        assert table.returncode == 0, table.stderr
        assert "crasher-0: last exit status 3, the end of .meshkit/logs/crasher-0.log:" in (
            table.stdout
        )
        assert "  | boom: no database" in table.stdout
        assert f"astray-0: listens on port {elsewhere}, not on $PORT" in table.stdout
        assert "echo-0: last exit status" not in table.stdout

        listed = meshkit_cli("routes", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        for instance_id in ("gateway", "echo-0", "crasher-0", "astray-0"):
            assert f"\n{instance_id} " in listed.stdout, listed.stdout
        of_echo = meshkit_cli("routes", "echo", "--json", cwd=tmp_path)
        assert of_echo.returncode == 0, of_echo.stderr
        assert [row["instance"] for row in json.loads(of_echo.stdout)] == ["echo-0"]
        unknown = meshkit_cli("routes", "nothing", cwd=tmp_path)
        assert unknown.returncode == 1 and "no instance or service called 'nothing'" in (
            unknown.stderr
        )
        applied = json.loads(meshkit_cli("routes", "echo-0", "--json", cwd=tmp_path).stdout)
        transports = {li["kind"]: li["transport"] for li in applied["config"]["listeners"]}
        assert transports["inbound"] == "mtls" and transports["admin"] == "plaintext"
        assert all("tls" not in li for li in applied["config"]["listeners"])
        (echo_table,) = [t for t in applied["config"]["routes"] if t["service"] == "echo"]
        assert echo_table["rules"][-1]["retry"]["attempts"] == 3
        text = meshkit_cli("routes", "echo-0", cwd=tmp_path).stdout
        assert "inbound (inbound, mtls)" in text, text
        assert "retry 3x on 5xx,reset" in text, text

        restart = subprocess.run(
            [sys.executable, "-m", "meshkit.cli", "restart", "echo"],
            cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False,
        )
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert "source" not in restart.stdout + restart.stderr
        status = mesh.status()
        (echo,) = instances(status, "echo")
        assert echo["id"] == "echo-0~2" and echo["name"] == "echo-0"
        assert echo["reason"] == "meshkit restart echo"
        assert "source" not in status["reload"]["summary"]
        assert echo["log_file"] == "echo-0.log"
        assert "echo-0~2: started for meshkit restart echo" in meshkit_cli(
            "status", cwd=tmp_path
        ).stdout
        with urllib.request.urlopen(mesh.gateway_url() + "/", timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["instance"] == echo["name"]
        assert (tmp_path / ".meshkit" / "logs" / echo["log_file"]).exists()
    finally:
        mesh.kill_everything()
