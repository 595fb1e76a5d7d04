"""A real Prometheus (Debian's ``prometheus``) scrapes the mesh's one endpoint and counts right.

The test starts the example shop, sends requests through the gateway, points
a Prometheus of its own at the control plane's ``/metrics`` (with the mesh's
token as its bearer credentials file, ``honor_labels`` for the sidecars'
``instance`` label) and asks it, through its HTTP API, for Istio's usual
query.  Every request is counted by both sidecars of a hop, as in Istio
(``reporter="source"`` and ``"destination"``), so the plain query returns
twice what was sent and the destination reporter exactly what was sent.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshkit.api.access import TOKEN_FILE
from meshkit.observe.server import read_address
from tests.meshproc import MeshProcess, example_meshfile, running_mesh

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="Debian's prometheus is not installed (apt-get install prometheus; scripts/test does)",
    ),
]

QUERY = "sum by (destination_service_name, response_code) (istio_requests_total)"
PAGES = 7


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("observe-shop")
    with running_mesh(workdir, example_meshfile(workdir), gateway_synced=True) as running:
        yield running


@pytest.fixture
def prometheus(shop: MeshProcess, tmp_path: Path) -> Iterator[str]:
    run_dir = shop.workdir / ".meshkit" / "run"
    address = read_address(run_dir)
    assert address is not None, "the control plane wrote no observe.json"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: meshkit\n"
        "    honor_labels: true\n"
        "    authorization:\n"
        f"      credentials_file: {run_dir / TOKEN_FILE}\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{address['port']}']\n"
    )
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(
                "prometheus did not become ready:\n" + (tmp_path / "prometheus.log").read_text()
            )
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def promql(url: str, query: str) -> dict[tuple[str, str], int]:
    target = url + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(target, timeout=5) as answer:
        document: dict[str, Any] = json.load(answer)
    assert document["status"] == "success", document
    return {
        (row["metric"]["destination_service_name"], row["metric"]["response_code"]): int(
            float(row["value"][1])
        )
        for row in document["data"]["result"]
    }


def test_prometheus_counts_the_requests_the_test_sent(shop: MeshProcess, prometheus: str) -> None:
    for _ in range(PAGES):
        with urllib.request.urlopen(shop.gateway_url() + "/", timeout=10) as answer:
            assert answer.status == 200
    expected = {("frontend", "200"): PAGES, ("catalog", "200"): PAGES, ("reviews", "200"): PAGES}
    seen: dict[tuple[str, str], int] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = promql(
            prometheus,
            QUERY.replace("istio_requests_total", 'istio_requests_total{reporter="destination"}'),
        )
        if seen == expected:
            break
        time.sleep(0.5)
    assert seen == expected
    both_reporters = promql(prometheus, QUERY)
    assert both_reporters == {key: 2 * count for key, count in expected.items()}
    instances = promql(
        prometheus,
        'count by (destination_service_name, response_code) (count by (instance, destination_service_name, response_code) (istio_requests_total{reporter="destination"}))',
    )
    # Catalog's requests were counted by the instances that served them (three of them).
    assert 1 <= instances[("catalog", "200")] <= 3


def test_the_mesh_endpoint_needs_the_token(shop: MeshProcess) -> None:
    address = read_address(shop.workdir / ".meshkit" / "run")
    assert address is not None
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{address['url']}/metrics", timeout=5)
    refused.value.close()
    assert refused.value.code == 401
