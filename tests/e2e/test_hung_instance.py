"""A hung instance (SIGSTOP) leaves rotation as its requests time out, against a real mesh
(issue 12): each request the route timeout cuts counts for outlier detection, so
the instance is ejected long before its (here slow) health checks would notice."""

from __future__ import annotations

import http.client
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent / "apps" / "versioned_echo.py"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("hung")
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get, outlier

mesh = Mesh("hung")
mesh.service("echo", run="{sys.executable} {APP}", replicas=2,
             health=http_get("/healthz", period="60s"))
mesh.route("echo", timeout="1s")
mesh.policy("echo", outlier=outlier(consecutive_errors=3))
mesh.gateway(port=0, routes={{"/": "echo"}})
"""
    )
    with running_mesh(workdir, meshfile) as process:
        yield process


def _status(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/x")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_a_sigstopped_instance_is_ejected_by_its_timeouts(mesh: MeshProcess) -> None:
    port = urlsplit(mesh.gateway_url()).port
    assert port is not None
    shell = mesh.instance("echo-0")["pid"]  # the run command's shell: stop the app under it
    [hung] = [int(pid) for pid in Path(f"/proc/{shell}/task/{shell}/children").read_text().split()]
    os.kill(hung, signal.SIGSTOP)
    try:
        statuses = [_status(port) for _ in range(12)]
        # Round robin: about every other request times out, until the third one.
        assert statuses.count(504) == 3, statuses
        assert statuses[-4:] == [200] * 4, statuses
        # The health checks (every 60 s) have not noticed: outlier detection did it.
        assert mesh.instance("echo-0")["state"] == "healthy"
    finally:
        os.kill(hung, signal.SIGCONT)
