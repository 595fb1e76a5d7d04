"""Logs people can read, through real processes: ``meshkit up`` keeps requests off the
terminal, the access log says who served what, ``meshkit logs`` interleaves the files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.meshproc import REPO, MeshProcess

pytestmark = pytest.mark.e2e

APPS = REPO / "tests" / "e2e" / "apps"


def get(url: str, request_id: str) -> int:
    request = urllib.request.Request(url, headers={"x-request-id": request_id})
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
        return int(answer.status)


def access_records(path: Path, request_id: str, timeout: float = 10.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        records = [
            json.loads(line)
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith('{"time"') and request_id in line
        ]
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def meshkit_logs(workdir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "meshkit.cli", "logs", *args],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_requests_stay_in_the_files_and_meshkit_logs_reads_them(tmp_path: Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(
        textwrap.dedent(f"""
        from meshkit import Mesh, http_get
        mesh = Mesh("logs")
        mesh.service("echo", run="python {APPS}/versioned_echo.py", health=http_get("/healthz"))
        mesh.gateway(port=0, routes={{"/": "echo"}})
    """)
    )
    mesh = MeshProcess(meshfile, tmp_path, "--no-watch", "--access-log-format", "json")
    follower: subprocess.Popen[str] | None = None
    try:
        mesh.wait_ready(timeout=60)
        url = mesh.gateway_url()
        assert get(url + "/items", "logs-e2e-1") == 200
        gateway_log = tmp_path / ".meshkit" / "logs" / "gateway.proxy.log"
        [record] = access_records(gateway_log, "logs-e2e-1")
        assert record["method"] == "GET" and record["path"] == "/items", record
        assert record["status"] == 200 and record["flag"] == "-", record
        assert record["upstream"] == "echo-0", record
        assert isinstance(record["trace_id"], str) and len(record["trace_id"]) == 32, record
        assert isinstance(record["bytes_out"], int) and record["bytes_out"] > 0, record
        [served] = access_records(tmp_path / ".meshkit" / "logs" / "echo-0.proxy.log", "logs-e2e-1")
        assert served["trace_id"] == record["trace_id"], (served, record)
        time.sleep(0.5)  # the terminal view polls the files
        assert "logs-e2e-1" not in mesh.output(), mesh.output()[-2000:]

        printed = meshkit_logs(tmp_path, "--access")
        out, _ = printed.communicate(timeout=30)
        assert printed.returncode == 0, out
        mine = [line for line in out.splitlines() if "logs-e2e-1" in line]
        assert [line.split(" | ")[0].rstrip() for line in mine] == [
            "gateway.proxy",
            "echo-0.proxy",
        ] or [line.split(" | ")[0].rstrip() for line in mine] == [
            "echo-0.proxy",
            "gateway.proxy",
        ], out
        plain = meshkit_logs(tmp_path, "echo")
        out, _ = plain.communicate(timeout=30)
        assert plain.returncode == 0 and "logs-e2e-1" not in out and "gateway" not in out, out

        follower = meshkit_logs(tmp_path, "-f", "--access", "gateway")
        time.sleep(1.5)
        assert get(url + "/followed", "logs-e2e-2") == 200
        deadline = time.monotonic() + 15
        assert follower.stdout is not None
        seen = ""
        while "logs-e2e-2" not in seen:
            assert time.monotonic() < deadline, seen
            seen += follower.stdout.readline()
        assert seen.splitlines()[-1].startswith("gateway.proxy | {"), seen
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 130
        assert mesh.stop() == 130
        mesh.wait_no_processes(timeout=10)
    finally:
        if follower is not None:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
            if follower.stdout is not None:
                follower.stdout.close()
        mesh.kill_everything()
