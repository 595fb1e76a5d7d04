"""Hot reload end to end: ``meshkit up`` with real sidecars, Meshfile edits under load.

Load: a few client threads send requests through the gateway back to back
(each on a fresh connection, so every request crosses the gateway's pool)
and record every answer; "no failed request" means every one got a 200.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.meshproc import MeshProcess

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent / "apps" / "reload_echo.py"


def meshfile_text(
    *,
    route_to: str = "a",
    a_env: str = "old",
    a_replicas: int = 1,
    gateway_port: int = 0,
    extra: str = "",
) -> str:
    return f"""\
from meshkit import Mesh, http_get

mesh = Mesh("reload")
mesh.service("a", run="{sys.executable} {APP}", health=http_get("/healthz", period="100ms"),
             replicas={a_replicas}, env={{"FLAVOUR": "{a_env}"}}, watch=["a_src"])
mesh.service("b", run="{sys.executable} {APP}", health=http_get("/healthz", period="100ms"))
{extra}
mesh.gateway(port={gateway_port}, routes={{"/": "{route_to}"}})
"""


def write(meshfile: Path, text: str) -> float:
    """Replace the Meshfile as editors do (write a new file, rename it over); when."""
    fresh = meshfile.with_suffix(".tmp")
    fresh.write_text(text)
    os.replace(fresh, meshfile)
    return time.monotonic()


@attrs.define
class Answer:
    at: float
    status: int  # 0: no HTTP answer at all
    sent_at: float = 0.0  # wall clock (time.time()) when the request was sent
    body: dict[str, Any] = attrs.field(factory=dict)
    error: str = ""


@attrs.define
class Load:
    port: int
    answers: list[Answer] = attrs.field(factory=list)
    stop: threading.Event = attrs.field(factory=threading.Event)

    def one(self) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent_at = time.time()
        try:
            conn.request("GET", "/work")
            response = conn.getresponse()
            data = response.read()
            body = json.loads(data) if response.status == 200 else {"raw": data.decode()}
            return Answer(at=time.monotonic(), status=response.status, body=body, sent_at=sent_at)
        except (OSError, http.client.HTTPException) as error:
            return Answer(at=time.monotonic(), status=0, error=repr(error), sent_at=sent_at)
        finally:
            conn.close()

    def run(self) -> None:
        while not self.stop.is_set():
            self.answers.append(self.one())

    def failed(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status != 200]


@contextmanager
def load_on(port: int, clients: int = 3) -> Iterator[Load]:
    load = Load(port=port)
    threads = [threading.Thread(target=load.run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(15)


def gateway_port(mesh: MeshProcess) -> int:
    return int(mesh.gateway_url().rsplit(":", 1)[1])


def instances(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for s in status["services"] for i in s["instances"]}


def reloads(mesh: MeshProcess) -> int:
    return int(mesh.status()["reload"]["reloads"])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "a_src").mkdir()
    (tmp_path / "a_src" / "code.py").write_text("VERSION = 1\n")
    (tmp_path / "Meshfile.py").write_text(meshfile_text())
    return tmp_path


def start(start_mesh: type[MeshProcess], project: Path, *extra: str) -> MeshProcess:
    mesh = start_mesh(project / "Meshfile.py", project, *extra)
    mesh.wait_ready(timeout=60)
    mesh.wait_until(lambda s: s["gateways"] and s["gateways"][0]["sync"] == "SYNCED")
    return mesh


def test_gateway_route_switch_under_load_fails_no_request_and_the_old_route_ends_at_the_ack(
    start_mesh: type[MeshProcess], project: Path
) -> None:
    mesh = start(start_mesh, project)
    before = instances(mesh.status())
    with load_on(gateway_port(mesh)) as load:
        time.sleep(0.5)
        saved = write(project / "Meshfile.py", meshfile_text(route_to="b"))
        mesh.wait_until(lambda s: s["reload"]["reloads"] >= 1, timeout=30)
        time.sleep(0.5)
    assert load.failed() == [], load.failed()[:5]
    status = mesh.status()
    # The clock starts at the control plane's record of the gateway's ACK, not at the
    # save (evaluating the Meshfile takes longer on a loaded machine): no request
    # sent after the gateway acknowledged the new route was served by the old one.
    acked_at = float(status["reload"]["finished_at"])
    last_a = max((a for a in load.answers if a.body.get("service") == "a"), key=lambda a: a.at)
    late = [a for a in load.answers if a.body.get("service") == "a" and a.sent_at > acked_at]
    assert late == [], f"{len(late)} requests sent after the ACK still reached a"
    assert load.answers[-1].body["service"] == "b"
    assert any(a.sent_at > acked_at for a in load.answers), "no request after the ACK"
    assert status["reload"]["error"] is None and status["reload"]["summary"] == "config: gateway"
    print(f"\nreload: {status['reload']['duration_ms']} ms (change detected -> last ACK); "
          f"{len(load.answers)} requests, 0 failed; old route last answered "
          f"{(last_a.at - saved) * 1000:.0f} ms after the save")
    after = instances(status)
    assert {k: v["pid"] for k, v in after.items()} == {k: v["pid"] for k, v in before.items()}
    assert all(i["sync"] == "SYNCED" for i in after.values())
    routes = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "routes", "gateway"],
        cwd=project, capture_output=True, text=True, check=True,
    ).stdout
    assert "prefix / -> b" in routes and "SYNCED" in routes


def test_a_broken_meshfile_changes_nothing_until_it_is_fixed(
    start_mesh: type[MeshProcess], project: Path
) -> None:
    mesh = start(start_mesh, project)
    pids = {k: v["pid"] for k, v in instances(mesh.status()).items()}
    with load_on(gateway_port(mesh), clients=1) as load:
        write(project / "Meshfile.py", meshfile_text(route_to="b") + "mesh.service(\n")
        status = mesh.wait_until(lambda s: s["reload"]["error"] is not None, timeout=10)
        syntax = status["reload"]["error"]
        assert re.search(r"Meshfile\.py:\d+: ", syntax), syntax
        assert f"reload: {syntax}" in status["errors"]
        write(project / "Meshfile.py", meshfile_text(route_to="nosuch"))
        status = mesh.wait_until(
            lambda s: "nosuch" in (s["reload"]["error"] or ""), timeout=10
        )
        assert "Meshfile.py:8:" in status["reload"]["error"], status["reload"]
        table = subprocess.run(
            [sys.executable, "-m", "meshkit.cli", "status"],
            cwd=project, capture_output=True, text=True, check=True,
        ).stdout
        assert re.search(r"error: reload: \S*Meshfile\.py:8: ", table), table
        time.sleep(0.3)
        assert load.answers[-1].body["service"] == "a"
        write(project / "Meshfile.py", meshfile_text(route_to="b"))
        status = mesh.wait_until(lambda s: s["reload"]["reloads"] == 1, timeout=10)
        time.sleep(0.3)
    assert status["reload"]["error"] is None and status["errors"] == []
    assert load.failed() == [] and load.answers[-1].body["service"] == "b"
    assert {k: v["pid"] for k, v in instances(status).items()} == pids


def test_env_change_of_two_replicas_rolls_them_with_no_failed_request(
    start_mesh: type[MeshProcess], project: Path
) -> None:
    (project / "Meshfile.py").write_text(meshfile_text(a_replicas=2))
    mesh = start(start_mesh, project)
    pid_b = instances(mesh.status())["b-0"]["pid"]
    with load_on(gateway_port(mesh)) as load:
        time.sleep(0.5)
        write(project / "Meshfile.py", meshfile_text(a_replicas=2, a_env="new"))
        status = mesh.wait_until(lambda s: s["reload"]["reloads"] >= 1, timeout=60)
        time.sleep(0.5)
    flavours = [a.body.get("flavour") for a in load.answers if a.status == 200]
    print(f"\nrolling restart of 2 replicas: {len(load.answers)} requests, "
          f"{len(load.failed())} failed; reload {status['reload']['duration_ms']} ms")
    assert load.failed() == [], load.failed()[:5]
    assert "old" in flavours and flavours[-1] == "new"
    assert status["reload"]["error"] is None, status["reload"]
    now = instances(status)
    assert sorted(now) == ["a-0~2", "a-1~2", "b-0"]
    assert {now["a-0~2"]["name"], now["a-1~2"]["name"]} == {"a-0", "a-1"}
    assert now["b-0"]["pid"] == pid_b
    assert (project / ".meshkit" / "logs" / "a-0.log").exists()
    assert not (project / ".meshkit" / "logs" / "a-0~2.log").exists()


def test_editing_a_watched_source_restarts_only_that_service(
    start_mesh: type[MeshProcess], project: Path
) -> None:
    mesh = start(start_mesh, project)
    before = instances(mesh.status())
    with load_on(gateway_port(mesh)) as load:
        time.sleep(0.3)
        (project / "a_src" / "code.py").write_text("VERSION = 2\n")
        status = mesh.wait_until(lambda s: s["reload"]["reloads"] >= 1)
        time.sleep(0.3)
    print(f"\nrestart of a single replica: {len(load.answers)} requests, "
          f"{len(load.failed())} failed; reload {status['reload']['duration_ms']} ms")
    assert load.failed() == [], load.failed()[:5]  # even one replica: successor first
    after = instances(status)
    assert sorted(after) == ["a-0~2", "b-0"]
    assert after["a-0~2"]["state"] == "healthy"
    assert after["b-0"]["pid"] == before["b-0"]["pid"]
    assert "restart a (source)" in status["reload"]["summary"]


def test_a_sidecar_nacks_a_config_it_cannot_apply_and_keeps_serving(
    start_mesh: type[MeshProcess], project: Path
) -> None:
    mesh = start(start_mesh, project, "--no-watch")
    port = gateway_port(mesh)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        write(project / "Meshfile.py", meshfile_text(route_to="b", gateway_port=busy))
        time.sleep(1.0)
        assert reloads(mesh) == 0  # --no-watch: nothing happens until 'meshkit reload'
        reload = subprocess.run(
            [sys.executable, "-m", "meshkit.cli", "reload"],
            cwd=project, capture_output=True, text=True, check=False,
        )
        status = mesh.wait_until(lambda s: s["gateways"][0]["sync"].startswith("NACKED"))
    assert reload.returncode == 1
    assert "gateway NACKed config version" in reload.stderr, reload.stderr
    gateway = status["gateways"][0]
    assert f"cannot listen on 127.0.0.1:{busy}" in gateway["sync"]
    assert gateway["applied_version"] < gateway["config_version"]
    assert any("gateway: config version" in e and "NACKED" in e for e in status["errors"])
    assert Load(port=port).one().body["service"] == "a"  # the old config keeps serving
    table = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "status"],
        cwd=project, capture_output=True, text=True, check=True,
    ).stdout
    assert "NACKED" in table
