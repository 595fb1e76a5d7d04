"""Resilience end to end (issues 6 and 7): ``meshkit up`` with real sidecars, through the gateway.

One mesh for the module: ``victim`` (two replicas, retries on, one killed under
load), ``svc`` (rules per path: a 1 s timeout, a delay fault, an abort fault,
retries that run out), ``guarded`` (a breaker of two requests), ``narrow`` (a
breaker of one connection) and ``moving``
(v1/v2, the split the reload test turns from 100/0 to 0/100).  The app is
``apps/versioned_echo.py``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.l7client import APP, concurrently, gateway_port, instances, load_on, request
from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e


def meshfile_text(*, moving_v1: int = 100, moving_v2: int = 0) -> str:
    return f"""\
from meshkit import Mesh, breaker, fault, http_get, match, retry, split

mesh = Mesh("resilience")
mesh.service("victim", run="{sys.executable} {APP}", replicas=2,
             health=http_get("/healthz", period="200ms"))
mesh.service("svc", run="{sys.executable} {APP}", health=http_get("/healthz", period="200ms"))
mesh.service("guarded", run="{sys.executable} {APP}", health=http_get("/healthz", period="200ms"))
mesh.service("narrow", run="{sys.executable} {APP}", health=http_get("/healthz", period="200ms"))
for version in ("v1", "v2"):
    mesh.service("moving", version=version, run="{sys.executable} {APP}",
                 health=http_get("/healthz", period="200ms"))

mesh.route("victim", retry=retry(attempts=3, retry_on=["5xx", "connect-failure", "reset"]))
mesh.route("svc",
    match(path_prefix="/svc/hang").to(timeout="1s"),
    match(path_prefix="/svc/delay").to(fault=fault(delay="300ms")),
    match(path_prefix="/svc/abort").to(fault=fault(abort=503, percent=100)),
    match(path_prefix="/svc/exhaust").to(retry=retry(attempts=2, retry_on=["5xx"])),
)
mesh.policy("guarded", breaker=breaker(max_requests=2))
mesh.policy("narrow", breaker=breaker(max_connections=1))
mesh.route("moving", default=split(v1={moving_v1}, v2={moving_v2}))
mesh.gateway(port=0, routes={{
    "/victim": "victim", "/svc": "svc", "/guarded": "guarded", "/narrow": "narrow",
    "/moving": "moving",
}})
"""


def write(meshfile: Path, text: str) -> float:
    """Replace the Meshfile as editors do (write a new file, rename it over); when."""
    fresh = meshfile.with_suffix(".tmp")
    fresh.write_text(text)
    os.replace(fresh, meshfile)
    return time.monotonic()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("resilience")
    (workdir / "Meshfile.py").write_text(meshfile_text())
    with running_mesh(workdir, workdir / "Meshfile.py", gateway_synced=True) as running:
        yield running


@pytest.fixture(scope="module")
def port(mesh: MeshProcess) -> int:
    return gateway_port(mesh)


def test_killing_one_of_two_replicas_under_load_fails_no_request(
    mesh: MeshProcess, port: int
) -> None:
    first, _ = sorted(instances(mesh, "victim"), key=lambda i: str(i["id"]))
    with load_on(lambda: request(port, "/victim/work")) as load:
        time.sleep(0.5)
        os.kill(first["pid"], signal.SIGKILL)
        time.sleep(2.5)
    answered = {a.json["instance"] for a in load.answers if a.status == 200}
    assert load.failed() == [], load.failed()[:5]
    assert len(load.answers) > 50 and answered == {"victim-0", "victim-1"}, (
        len(load.answers),
        answered,
    )
    print(f"\nkill under load: {len(load.answers)} requests, 0 failed")


def test_a_hanging_backend_gets_504_ut_after_the_route_timeout(port: int) -> None:
    answer = request(port, "/svc/hang?hang=1")
    assert (answer.status, answer.flag) == (504, "UT"), answer
    assert 0.9 <= answer.seconds < 2.0, answer


def test_a_response_that_started_in_time_is_not_cut_by_the_route_timeout(port: int) -> None:
    answer = request(port, "/svc/hang/drip?drip=2")
    assert (answer.status, answer.raw) == (200, b"x" * 10), answer
    assert answer.seconds >= 1.9, answer


def test_requests_over_the_breaker_limit_get_503_uo_at_once(port: int) -> None:
    answers = concurrently(8, lambda: request(port, "/guarded/slow?sleep=1"))
    refused = [a for a in answers if a.status == 503]
    served = [a for a in answers if a.status == 200]
    assert refused and served and len(refused) + len(served) == 8, answers
    assert all(a.flag == "UO" and a.seconds < 0.5 for a in refused), refused
    assert all(a.seconds >= 1.0 for a in served), served


def test_requests_needing_a_connection_past_max_connections_get_503_uo_at_once(
    port: int,
) -> None:
    answers = concurrently(4, lambda: request(port, "/narrow/slow?sleep=1"))
    refused = [a for a in answers if a.status == 503]
    served = [a for a in answers if a.status == 200]
    assert refused and served and len(refused) + len(served) == 4, answers
    assert all(a.flag == "UO" and a.seconds < 0.5 for a in refused), refused
    assert all(b"max_connections=1" in a.raw for a in refused), refused
    assert all(a.seconds >= 1.0 for a in served), served


def test_a_delay_fault_is_felt_by_the_client(port: int) -> None:
    plain = request(port, "/svc/plain")
    delayed = request(port, "/svc/delay")
    assert plain.status == delayed.status == 200, (plain, delayed)
    assert 0.3 <= delayed.seconds < 1.0 and plain.seconds < 0.3, (plain, delayed)


def test_an_abort_fault_answers_503_fi_without_calling_the_app(port: int) -> None:
    answer = request(port, "/svc/abort")
    assert (answer.status, answer.flag) == (503, "FI"), answer


def test_exhausted_retries_return_the_upstream_answer_and_log_urx(
    mesh: MeshProcess, port: int
) -> None:
    answer = request(port, "/svc/exhaust?status=503&marker=exhausted")
    assert answer.status == 503 and answer.flag == "", answer
    assert answer.json["path"] == "/svc/exhaust", answer
    log = mesh.workdir / ".meshkit" / "logs" / "gateway.proxy.log"
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        lines = [line for line in text.splitlines() if "marker=exhausted" in line]
        if lines:
            break
        time.sleep(0.05)
    assert lines and " 503 " in lines[-1] and "URX" in lines[-1], (
        lines,
        sorted(log.parent.iterdir()),
    )


def test_split_switched_by_a_meshfile_edit_under_load_fails_nothing_and_applies_fast(
    mesh: MeshProcess, port: int
) -> None:
    meshfile = mesh.meshfile
    reloads = int(mesh.status()["reload"]["reloads"])
    with load_on(lambda: request(port, "/moving/work")) as load:
        time.sleep(0.5)
        write(meshfile, meshfile_text(moving_v1=0, moving_v2=100))
        status = mesh.wait_until(
            lambda s: (
                s["reload"]["reloads"] > reloads
                and all(g["sync"] == "SYNCED" for g in s["gateways"])
            ),
            timeout=10,
        )
        acked = time.monotonic()
        time.sleep(1.5)
    try:
        assert status["reload"]["error"] is None, status["reload"]
        assert load.failed() == [], load.failed()[:5]
        last_v1 = max(a.at for a in load.answers if a.version == "v1")
        assert last_v1 - acked < 1.0, f"v1 still used {last_v1 - acked:.2f}s after the ACK"
        assert load.answers[-1].version == "v2"
        print(
            f"\nsplit switch: {len(load.answers)} requests, 0 failed; "
            f"v1 last seen {(last_v1 - acked) * 1000:.0f} ms after the ACK was seen"
        )
    finally:
        write(meshfile, meshfile_text())
        mesh.wait_until(lambda s: s["reload"]["reloads"] > reloads + 1, timeout=10)
