"""The shop, tested through the mesh with meshkit's pytest plugin.

Run from the repository root: ``pytest examples/shop/tests`` (add ``-n 2``
for two workers: each one gets its own mesh, state directory and ports).
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from meshkit.testing.handle import MeshHandle

pytestmark = pytest.mark.meshfile("meshfile.example.py")


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_frontend_through_the_gateway_shows_the_catalog(mesh: MeshHandle) -> None:
    status, body = get(mesh.url("frontend") + "/")
    assert status == 200
    assert b"teapot" in body


def test_catalog_through_the_test_ingress(mesh: MeshHandle) -> None:
    status, body = get(mesh.url("catalog") + "/items")
    assert status == 200
    assert json.loads(body)["version"] in ("v1", "v2")


def test_a_killed_catalog_instance_is_restarted(mesh: MeshHandle) -> None:
    killed = mesh.kill("catalog", instance=0)
    mesh.wait_healthy("catalog", timeout=30)
    assert mesh.status()["services"][0]["instances"][0]["pid"] != killed
    status, _ = get(mesh.url("catalog") + "/items")
    assert status == 200


def test_logs_show_the_requests_a_service_served(mesh: MeshHandle) -> None:
    get(mesh.url("reviews") + "/reviews")
    assert "/reviews" in mesh.logs("reviews")
