"""Local rate limits end to end: ``meshkit up``, real sidecars, curl, h2load and grpcio.

One mesh for the module: ``catalog`` (an HTTP/1.1 app that says who called
it), ``front`` (the same app, calling catalog through its sidecar) and ``rpc``
(a grpcio server).  Limits are per hour, so no refill happens during a test
however slow the machine: each bucket admits exactly its burst.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from meshkit.api.access import bearer_header
from meshkit.testing.calls import admin_token, read_calls
from meshkit.testing.status import instances_of
from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"
MESHFILE = f"""\
from meshkit import Mesh, http_get, match, tcp_connect

mesh = Mesh("limits")
echo = "{sys.executable} {APPS / "identity_echo.py"}"
mesh.service("catalog", run=echo, health=http_get("/healthz", period="100ms"))
mesh.service("front", run=echo, upstreams=["catalog"], health=http_get("/healthz", period="100ms"))
mesh.service("rpc", run="{sys.executable} {APPS / "grpc_echo.py"}", protocol="grpc",
             health=tcp_connect(period="100ms"))
mesh.rate_limit("catalog", "5/h", route=match(path_prefix="/limited"))
mesh.rate_limit("catalog", "4/h", route=match(path_prefix="/h2"))
mesh.rate_limit("catalog", "3/h", per="caller", route=match(path_prefix="/percaller"))
mesh.rate_limit("rpc", "2/h")
mesh.gateway(port=0, routes={{"/test.Echo/": "rpc", "/via": "front", "/": "catalog"}})
"""
LIMITED_LINE = (
    MESHFILE.splitlines().index(
        'mesh.rate_limit("catalog", "5/h", route=match(path_prefix="/limited"))'
    )
    + 1
)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("ratelimit")
    (workdir / "Meshfile.py").write_text(MESHFILE)
    with running_mesh(workdir, workdir / "Meshfile.py", gateway_synced=True) as running:
        yield running


def get(mesh: MeshProcess, path: str) -> tuple[int, dict[str, str]]:
    """``GET path`` through the gateway over HTTP/1.1: status and lower-cased headers."""
    port = int(mesh.gateway_url().rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def cli(mesh: MeshProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit.cli", *argv],
        cwd=mesh.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_burst_over_the_limit_gets_429_rl_with_retry_after(mesh: MeshProcess) -> None:
    answers = [get(mesh, "/limited/items") for _ in range(8)]
    assert [status for status, _ in answers] == [200] * 5 + [429] * 3
    _, refused = answers[-1]
    assert refused["x-meshkit-flag"] == "RL"
    assert 1 <= int(refused["retry-after"]) <= 720  # one token every 12 minutes
    reason = refused["x-meshkit-reason"]
    assert "rate limit 5/h burst 5 on route /limited* of 'catalog'" in reason
    assert f"Meshfile.py:{LIMITED_LINE}" in reason
    assert get(mesh, "/other")[0] == 200  # the limit is the route's only
    refusals = [
        c
        for c in read_calls(mesh.status(), "catalog", run_dir=mesh.run_dir)
        if c.path == "/limited/items"
    ]
    assert [call.flag for call in refusals].count("RL") == 3
    assert [call.status for call in refusals if call.flag == "RL"] == [429] * 3
    [catalog] = instances_of(mesh.status(), "catalog")
    metrics = urllib.request.urlopen(
        urllib.request.Request(
            f"http://127.0.0.1:{catalog['admin_port']}/metrics",
            headers=dict([bearer_header(admin_token(mesh.run_dir))]),
        )
    ).read()
    counted = re.findall(
        rb'istio_requests_total\{[^}]*response_code="429"[^}]*response_flags="RL"[^}]*\} (\d+)',
        metrics,
    )
    assert sum(map(int, counted)) >= 3, metrics.decode()
    log = mesh.workdir / ".meshkit" / "logs" / f"{catalog['id']}.proxy.log"
    deadline = time.monotonic() + 30
    while log.read_text().count("access GET /limited/items 429") < 3:
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    assert " RL " in log.read_text().split("access GET /limited/items 429")[-1].splitlines()[0]


def test_http2_clients_get_the_same_refusal(mesh: MeshProcess) -> None:
    if shutil.which("h2load") is None or shutil.which("curl") is None:
        pytest.skip("h2load and curl are needed (scripts/test installs them)")
    url = mesh.gateway_url() + "/h2/items"
    run = subprocess.run(
        ["h2load", "-n", "10", "-c", "1", "-m", "1", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", run.stdout)
    assert codes is not None, run.stdout
    assert codes.groups() == ("4", "0", "6", "0")
    curl = subprocess.run(
        ["curl", "-s", "-i", "--http2-prior-knowledge", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    head = curl.stdout.lower()
    assert head.startswith("http/2 429"), curl.stdout
    assert "x-meshkit-flag: rl" in head and re.search(r"retry-after: \d+", head)


def test_grpc_gets_resource_exhausted(mesh: MeshProcess) -> None:
    address = mesh.gateway_url().removeprefix("http://")
    with grpc.insecure_channel(address) as channel:
        say = channel.unary_unary(
            "/test.Echo/Say", request_serializer=bytes, response_deserializer=bytes
        )
        assert [say(b"hi", timeout=20) for _ in range(2)] == [b"echo:hi"] * 2
        with pytest.raises(grpc.RpcError) as refused:
            say(b"hi", timeout=20)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit 2/h burst 2 on 'rpc'" in (refused.value.details() or "")


def test_per_caller_limits_isolate_two_callers(mesh: MeshProcess) -> None:
    direct = [get(mesh, "/percaller/x")[0] for _ in range(5)]
    assert direct == [200] * 3 + [429] * 2  # the gateway's bucket
    via_front = [get(mesh, "/via/catalog/percaller/x")[0] for _ in range(5)]
    assert via_front[:3] == [200] * 3  # front's own bucket, untouched by the gateway's
    assert via_front[3:] == [502] * 2  # front says catalog refused it
    refused = [
        call.caller
        for call in read_calls(mesh.status(), "catalog", run_dir=mesh.run_dir)
        if call.path == "/percaller/x" and call.flag == "RL"
    ]
    assert sorted(refused) == ["front", "front", "gateway", "gateway"]


def test_meshkit_limit_takes_effect_at_runtime_and_clear_restores(mesh: MeshProcess) -> None:
    assert [get(mesh, "/runtime")[0] for _ in range(3)] == [200] * 3
    limited = cli(mesh, "limit", "catalog", "1/h", "--route", "/runtime")
    assert limited.returncode == 0, limited.stderr
    assert "limit l" in limited.stdout and "not every sidecar" not in limited.stdout
    status, headers = get(mesh, "/runtime")
    assert status == 200
    status, headers = get(mesh, "/runtime")
    assert (status, headers.get("x-meshkit-flag")) == (429, "RL")
    assert "(meshkit limit l" in headers["x-meshkit-reason"]
    listed = cli(mesh, "limit", "--list")
    assert listed.returncode == 0, listed.stderr
    assert "catalog 1/h" not in listed.stdout  # rates under 1/s are shown per minute
    assert "on /runtime*" in listed.stdout and "on /limited*" in listed.stdout
    assert f"Meshfile.py:{LIMITED_LINE}" in listed.stdout
    cleared = cli(mesh, "limit", "catalog", "--clear")
    assert cleared.returncode == 0, cleared.stderr
    assert "cleared l" in cleared.stdout
    assert [get(mesh, "/runtime")[0] for _ in range(3)] == [200] * 3
    assert 429 in [get(mesh, "/limited/items")[0] for _ in range(6)]  # the Meshfile limit


def test_a_meshfile_edit_reloads_limits_like_routes(mesh: MeshProcess) -> None:
    meshfile = mesh.workdir / "Meshfile.py"
    meshfile.write_text(
        MESHFILE + 'mesh.rate_limit("catalog", "1/h", route=match(path_prefix="/reloaded"))\n'
    )
    try:
        reloaded = cli(mesh, "reload")
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
        assert [get(mesh, "/reloaded")[0] for _ in range(3)] == [200, 429, 429]
    finally:
        meshfile.write_text(MESHFILE)
        assert cli(mesh, "reload").returncode == 0
    assert [get(mesh, "/reloaded")[0] for _ in range(3)] == [200] * 3


def test_meshkit_limit_refuses_bad_input(mesh: MeshProcess) -> None:
    bad_rate = cli(mesh, "limit", "catalog", "ten/s")
    assert bad_rate.returncode == 2 and "'ten' is not a whole number" in bad_rate.stderr
    unknown = cli(mesh, "limit", "catalgo", "5/s")
    assert unknown.returncode == 1 and "no service called 'catalgo'" in unknown.stderr
