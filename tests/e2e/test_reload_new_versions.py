"""A reload that adds a version and sends traffic to it in the same save drops nothing:
the new instances are healthy, and every caller knows them, before any route uses them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.loadgen import Load
from tests.meshproc import REPO, MeshProcess

pytestmark = pytest.mark.e2e

APPS = REPO / "tests" / "e2e" / "apps"


def meshfile_text(*, with_v2: bool) -> str:
    v2 = textwrap.dedent(f"""
        mesh.service("echo", version="v2", run="python {APPS}/versioned_echo.py",
                     health=http_get("/healthz"))
        mesh.route("echo", default=split(v1=80, v2=20))
    """) if with_v2 else ""
    return textwrap.dedent(f"""
        from meshkit import Mesh, http_get, split
        mesh = Mesh("versions")
        mesh.service("echo", version="v1", run="python {APPS}/versioned_echo.py",
                     health=http_get("/healthz"))
        mesh.gateway(port=0, routes={{"/": "echo"}})
    """) + v2


def test_a_new_version_and_a_split_to_it_in_one_save_drop_nothing(tmp_path: Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(meshfile_text(with_v2=False))
    mesh = MeshProcess(meshfile, tmp_path, "--no-watch")
    try:
        mesh.wait_ready(timeout=60)
        load = Load(mesh.gateway_url() + "/", rate=200, clients=16).start()
        try:
            time.sleep(1)
            meshfile.write_text(meshfile_text(with_v2=True))
            reload = subprocess.run(
                [sys.executable, "-m", "meshkit.cli", "reload"],
                cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False,
            )
            assert reload.returncode == 0, reload.stdout + reload.stderr
            time.sleep(2)
        finally:
            load.stop()
        failures = load.failures()
        print(f"\n{len(load.outcomes)} requests during the reload, {len(failures)} failed")
        assert failures == [], failures[:5]
        ids = {i["id"] for s in mesh.status()["services"] for i in s["instances"]}
        assert ids == {"echo-v1-0", "echo-v2-0"}
    finally:
        mesh.kill_everything()
