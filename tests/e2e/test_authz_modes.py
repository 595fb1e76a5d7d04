"""The mesh-wide authorization modes through a real mesh, and a policy flipped by hot reload.

``authorization="upstreams"``: exactly the calls the Meshfile's ``upstreams=``
declare get through (the gateway calls what it routes to); ``"deny"``: only what
an ALLOW policy allows.  Editing the Meshfile flips a policy while requests flow:
each one is answered 200 or 403 ``RBAC``, never anything else.
"""

from __future__ import annotations

import http.client
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.meshproc import MeshProcess

pytestmark = pytest.mark.e2e

ECHO = f"{sys.executable} {Path(__file__).resolve().parent / 'apps' / 'reload_echo.py'}"


def meshfile(mode: str, extra: str = "") -> str:
    return f"""\
from meshkit import Mesh, http_get

mesh = Mesh("modes", authorization="{mode}")
mesh.service("catalog", run="{ECHO}", health=http_get("/healthz", period="100ms"))
mesh.service("frontend", run="{ECHO}", health=http_get("/healthz", period="100ms"),
             upstreams=["catalog"])
mesh.service("reviews", run="{ECHO}", health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, routes={{"/": "frontend"}})
{extra}"""


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[MeshProcess]:
    (tmp_path / "Meshfile.py").write_text(meshfile("upstreams"))
    running = MeshProcess(tmp_path / "Meshfile.py", tmp_path)
    try:
        running.wait_ready(timeout=90)
        running.wait_until(lambda s: s["gateways"] and s["gateways"][0]["sync"] == "SYNCED")
        yield running
    finally:
        running.kill_everything()


def call_as(mesh: MeshProcess, caller: str, service: str, path: str = "/x") -> tuple[int, str]:
    """A GET to ``service`` through ``caller``'s sidecar: status and flag."""
    port = mesh.instance(f"{caller}-0")["outbound_port"]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("GET", f"http://{service}{path}")
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("x-meshkit-flag") or ""
    finally:
        connection.close()


def gateway_get(mesh: MeshProcess) -> tuple[int, str]:
    port = int(mesh.gateway_url().rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("GET", "/x")
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("x-meshkit-flag") or ""
    finally:
        connection.close()


def rewrite(mesh: MeshProcess, text: str) -> None:
    before = mesh.status()["reload"]["reloads"]
    fresh = mesh.meshfile.with_suffix(".tmp")
    fresh.write_text(text)
    os.replace(fresh, mesh.meshfile)
    mesh.wait_until(lambda s: s["reload"]["reloads"] > before, timeout=60)
    mesh.wait_until(
        lambda s: (
            all(i["sync"] == "SYNCED" for svc in s["services"] for i in svc["instances"])
            and s["gateways"][0]["sync"] == "SYNCED"
        ),
        timeout=60,
    )


def test_upstreams_then_default_deny_flipped_while_traffic_flows(mesh: MeshProcess) -> None:
    assert call_as(mesh, "frontend", "catalog") == (200, "")
    assert call_as(mesh, "reviews", "catalog") == (403, "RBAC")
    assert call_as(mesh, "catalog", "frontend") == (403, "RBAC")
    assert gateway_get(mesh) == (200, "")

    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            answers.append(call_as(mesh, "reviews", "catalog"))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        rewrite(
            mesh,
            meshfile("deny", 'mesh.allow("catalog", source="reviews", methods=["GET"])\n'),
        )
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert set(answers) <= {(200, ""), (403, "RBAC")}, set(answers)
    assert answers[0] == (403, "RBAC") and answers[-1] == (200, ""), answers
    # Default deny: only what an ALLOW policy allows.
    assert call_as(mesh, "reviews", "catalog") == (200, "")
    assert call_as(mesh, "frontend", "catalog") == (403, "RBAC")
    assert gateway_get(mesh) == (403, "RBAC")
