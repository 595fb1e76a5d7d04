"""A 64 MB body streamed through two sidecars (gateway -> inbound -> app) both ways,
with the sidecars' peak memory staying far below the body's size."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

SIZE = 64 * 1024 * 1024
APPS = Path(__file__).resolve().parent / "apps"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def bulk_mesh(tmp_path: Path) -> Iterator[MeshProcess]:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(
        "from meshkit import Mesh, http_get\n"
        "mesh = Mesh('bulk')\n"
        f"mesh.service('bulk', run='python {APPS / 'bulk.py'}', health=http_get('/healthz'))\n"
        "mesh.gateway(port=0, routes={'/': 'bulk'})\n"
    )
    with running_mesh(tmp_path, meshfile) as mesh:
        yield mesh


def test_large_bodies_stream_through_two_sidecars(bulk_mesh: MeshProcess) -> None:
    url = bulk_mesh.gateway_url()
    body = bulk_mesh.workdir / "download.bin"
    download = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "-D", "-", "-o", str(body),
         "-w", "%{size_download} %{time_total}s", f"{url}/bytes?n={SIZE}"],
        capture_output=True, text=True, check=True,
    )
    size = body.stat().st_size
    if size != SIZE:
        with body.open("rb") as received:
            start = received.read(500)
        raise AssertionError(
            f"downloaded {size} of {SIZE} bytes ({download.stdout.splitlines()[-1]});\n"
            f"headers:\n{download.stdout}\nbody starts: {start!r}\n"
            f"mesh status: {bulk_mesh.status()}\n{bulk_mesh.output()[-3000:]}"
        )
    body.unlink()
    # Upload a chunked body of the same size, generated on the fly.
    upload = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "-H", "transfer-encoding: chunked",
         "--data-binary", "@-", f"{url}/count"],
        input=b"y" * SIZE, capture_output=True, check=True,
    )
    assert upload.stdout.strip() == str(SIZE).encode(), (upload.stdout[:500], upload.stderr)
    status = bulk_mesh.status()
    gateway_pid = status["gateways"][0]["pid"]
    inbound_pid = bulk_mesh.instance("bulk-0")["sidecar_pid"]
    for pid in (gateway_pid, inbound_pid):
        assert peak_rss_mib(pid) < 80, f"sidecar {pid} buffered the body"
