"""``mesh.url(svc)`` for a service the gateway serves under a prefix points at that prefix."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from meshkit.testing.launch import LaunchOptions
from meshkit.testing.session import start_mesh

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent / "apps" / "reload_echo.py"
MESHFILE = f"""\
from meshkit import Mesh, http_get

mesh = Mesh("prefixes")
mesh.service("a", run="{sys.executable} {APP}", health=http_get("/healthz", period="100ms"))
mesh.service("b", run="{sys.executable} {APP}", health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, routes={{"/": "a", "/b": "b"}})
"""


def test_url_of_a_service_under_a_prefix_reaches_that_service(tmp_path: Path) -> None:
    (tmp_path / "Meshfile.py").write_text(MESHFILE)
    mesh = start_mesh(tmp_path / "Meshfile.py", options=LaunchOptions(ready_timeout=90))
    try:
        assert mesh.url("b") == mesh.gateway_url() + "/b"
        assert mesh.url("a") == mesh.gateway_url()
        for service in ("a", "b"):
            with urllib.request.urlopen(mesh.url(service) + "/work", timeout=10) as response:
                assert json.loads(response.read())["service"] == service
    finally:
        mesh.process.stop()
