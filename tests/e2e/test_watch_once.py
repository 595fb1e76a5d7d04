"""One save of a watched file restarts its service once, also when the file sits
beside the Meshfile (watched both as the Meshfile's directory and as a source)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from tests.meshproc import REPO, MeshProcess

pytestmark = pytest.mark.e2e

APPS = REPO / "tests" / "e2e" / "apps"


def test_one_save_of_a_watched_file_beside_the_meshfile_restarts_once(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text("VERSION = 1\n")
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(textwrap.dedent(f"""
        from meshkit import Mesh, http_get
        mesh = Mesh("once")
        mesh.service("a", run="python {APPS}/versioned_echo.py", health=http_get("/healthz"),
                     watch=["settings.py"])
    """))
    mesh = MeshProcess(meshfile, tmp_path)
    try:
        mesh.wait_ready(timeout=60)
        time.sleep(1)
        (tmp_path / "settings.py").write_text("VERSION = 2\n")
        mesh.wait_until(lambda s: s["reload"]["reloads"] >= 1, timeout=30)
        time.sleep(6)  # time for a second, spurious restart to show
        status = mesh.wait_ready(timeout=30)
        ids = [i["id"] for s in status["services"] for i in s["instances"]]
        assert ids == ["a-0~2"], ids
        assert status["reload"]["reloads"] == 1, status["reload"]
    finally:
        mesh.kill_everything()
