"""Route rules end to end (issue 5): ``meshkit up`` with real sidecars, requests through the gateway.

One mesh for the module: ``echo`` in four versions (``v3`` is a mirror target,
``v4`` another one that the mirror test stops) and ``pool``, two replicas
behind ``least_request``.  The app (``apps/versioned_echo.py``) answers with
its version and what it received, so each test reads where its request went
and what the sidecars did to it.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.l7client import APP, Answer, concurrently, gateway_port, instances, request
from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

MESHFILE = f"""\
from meshkit import (
    Mesh, absent, headers, http_get, match, mirror, prefix, present, regex,
)

mesh = Mesh("routing")
for version in ("v1", "v2", "v3"):
    mesh.service("echo", version=version, run="{sys.executable} {APP}",
                 health=http_get("/healthz", period="200ms"))
mesh.service("echo", version="v4", run="{sys.executable} {APP}",
             health=http_get("/healthz", period="200ms"), restart_policy="no")
mesh.service("pool", run="{sys.executable} {APP}", replicas=2,
             health=http_get("/healthz", period="200ms"))

mesh.route("echo",
    match(path="/moved").redirect(path="/new-home", status=302),
    match(path="/teapot").respond(418, "short and stout"),
    match(path_prefix="/old/").to(version="v1", rewrite_prefix="/new/"),
    match(path_prefix="/split").split(v1=80, v2=20),
    match(path_prefix="/mirror-up").to(version="v1", mirror=mirror(version="v3")),
    match(path_prefix="/mirror-down").to(version="v1", mirror=mirror(version="v4")),
    match(path="/stats/v3").to(version="v3", rewrite_prefix="/_stats"),
    match(path_prefix="/headers").to(
        version="v1",
        request_headers=headers(set={{"x-set": "mesh"}}, add={{"x-added": "mesh"}},
                                remove=["x-drop"]),
        response_headers=headers(set={{"x-app-keep": "mesh"}}, add={{"x-route": "headers"}},
                                 remove=["x-app-header"]),
    ),
    match(headers={{"x-canary": "1"}}).to(version="v2"),
    match(headers={{"x-user": prefix("beta-")}}).to(version="v2"),
    match(headers={{"x-debug": present(), "x-quiet": absent()}}).to(version="v2"),
    match(path="/exact").to(version="v2"),
    match(path_prefix="/api/v2/").to(version="v2"),
    match(path_regex=r"/items/[0-9]+").to(version="v2"),
    match(method=["DELETE", "PUT"]).to(version="v2"),
    match(query={{"flavour": "new"}}).to(version="v2"),
    match(query={{"id": regex("[0-9]+")}}).to(version="v2"),
    default="v1",
)
mesh.policy("pool", load_balancer="least_request")
mesh.gateway(port=0, routes={{"/pool": "pool", "/": "echo"}})
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("routing")
    (workdir / "Meshfile.py").write_text(MESHFILE)
    with running_mesh(workdir, workdir / "Meshfile.py", gateway_synced=True) as running:
        yield running


@pytest.fixture(scope="module")
def port(mesh: MeshProcess) -> int:
    return gateway_port(mesh)


@pytest.mark.parametrize(
    ("method", "path", "headers", "version"),
    [
        ("GET", "/anything", {}, "v1"),
        ("GET", "/anything", {"x-canary": "1"}, "v2"),
        ("GET", "/anything", {"x-canary": "0"}, "v1"),
        ("GET", "/anything", {"x-user": "beta-ann"}, "v2"),
        ("GET", "/anything", {"x-user": "ann-beta-"}, "v1"),
        ("GET", "/anything", {"x-debug": ""}, "v2"),
        ("GET", "/anything", {"x-debug": "1", "x-quiet": "1"}, "v1"),
        ("GET", "/exact", {}, "v2"),
        ("GET", "/exact/not", {}, "v1"),
        ("GET", "/api/v2/items", {}, "v2"),
        ("GET", "/api/v2", {}, "v1"),
        ("GET", "/items/42", {}, "v2"),
        ("GET", "/items/42x", {}, "v1"),
        ("GET", "/items/42?x=1", {}, "v2"),
        ("DELETE", "/anything", {}, "v2"),
        ("PUT", "/anything", {}, "v2"),
        ("POST", "/anything", {}, "v1"),
        ("GET", "/anything?flavour=new", {}, "v2"),
        ("GET", "/anything?flavour=old", {}, "v1"),
        ("GET", "/anything?id=17", {}, "v2"),
        ("GET", "/anything?id=x17", {}, "v1"),
    ],
)
def test_a_request_reaches_the_version_its_match_names(
    port: int, method: str, path: str, headers: dict[str, str], version: str
) -> None:
    answer = request(
        port, path, method=method, headers=headers, body=b"" if method != "GET" else None
    )
    assert answer.status == 200, answer
    assert answer.version == version, answer.json
    assert answer.json["method"] == method


def test_prefix_rewrite_shows_the_app_the_rewritten_path(port: int) -> None:
    answer = request(port, "/old/items/7?q=1")
    assert answer.status == 200, answer
    assert (answer.json["path"], answer.json["query"]) == ("/new/items/7", "q=1")


def test_redirect_answers_status_and_location_without_calling_the_app(port: int) -> None:
    answer = request(port, "/moved?keep=1")
    assert answer.status == 302, answer
    assert answer.headers["location"].split("?")[0].endswith("/new-home"), answer.headers


def test_direct_response_answers_status_and_body(port: int) -> None:
    answer = request(port, "/teapot")
    assert (answer.status, answer.raw) == (418, b"short and stout"), answer


def test_request_and_response_headers_are_set_added_and_removed(port: int) -> None:
    answer = request(
        port, "/headers", headers={"x-set": "client", "x-added": "client", "x-drop": "bye"}
    )
    assert answer.status == 200, answer
    seen = answer.json["headers"]
    assert seen["x-set"] == "mesh"
    assert "x-drop" not in seen
    assert seen["x-added"] == "client, mesh"
    assert answer.headers["x-app-keep"] == "mesh"
    assert answer.headers["x-route"] == "headers"
    assert "x-app-header" not in answer.headers


def test_added_request_header_is_appended_not_replacing(port: int) -> None:
    answer = request(port, "/headers")
    assert answer.json["headers"]["x-added"] == "mesh", answer.json


def test_weighted_split_80_20_stays_within_five_sigma(port: int) -> None:
    count = 400
    answers = concurrently_in_batches(port, "/split", count, batch=20)
    versions = Counter(answer.version for answer in answers)
    assert sum(versions.values()) == count and set(versions) <= {"v1", "v2"}, versions
    sigma = math.sqrt(count * 0.2 * 0.8)
    assert abs(versions["v2"] - count * 0.2) <= 5 * sigma, versions
    print(f"\nsplit 80/20 over {count}: {dict(versions)} (5 sigma = {5 * sigma:.0f})")


def concurrently_in_batches(port: int, path: str, count: int, *, batch: int) -> list[Answer]:
    answers: list[Answer] = []
    for _ in range(count // batch):
        answers.extend(concurrently(batch, lambda: request(port, path)))
    return answers


def stats_of_v3(port: int) -> dict[str, int]:
    """v3's counters (``/stats/v3`` is rewritten to the app's ``/_stats``)."""
    answer = request(port, "/stats/v3")
    assert answer.status == 200, answer
    return {key: int(value) for key, value in answer.json.items()}


def test_mirror_target_receives_copies_and_the_caller_sees_the_primary(port: int) -> None:
    before = stats_of_v3(port)
    for _ in range(10):
        answer = request(port, "/mirror-up/x")
        assert answer.status == 200 and answer.version == "v1", answer
    deadline = time.monotonic() + 5
    while stats_of_v3(port)["shadow"] < before["shadow"] + 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    after = stats_of_v3(port)
    assert after["shadow"] - before["shadow"] == 10, (before, after)
    assert after["total"] - before["total"] == 10, (before, after)


def test_mirror_never_changes_the_answer_when_its_target_is_down(
    mesh: MeshProcess, port: int
) -> None:
    (target,) = instances(mesh, "echo", "v4")
    os.kill(target["pid"], signal.SIGKILL)
    answers = [request(port, "/mirror-down/x") for _ in range(20)]
    mesh.wait_until(
        lambda s: any(
            i["id"] == target["id"] and i["state"] != "healthy"
            for svc in s["services"]
            for i in svc["instances"]
        ),
        timeout=10,
    )
    answers += [request(port, "/mirror-down/x") for _ in range(20)]
    assert all(a.status == 200 and a.version == "v1" for a in answers), answers
    assert max(a.seconds for a in answers) < 1.0, max(a.seconds for a in answers)


def test_least_request_spreads_over_both_replicas(port: int) -> None:
    slow = concurrently(8, lambda: request(port, "/pool?sleep=0.5"))
    assert all(a.status == 200 for a in slow), slow
    busy = Counter(a.json["instance"] for a in slow)
    assert len(busy) == 2 and min(busy.values()) >= 2, busy
    quick = Counter(request(port, "/pool").json["instance"] for _ in range(20))
    assert len(quick) == 2, quick
