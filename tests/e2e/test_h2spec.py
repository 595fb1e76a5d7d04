"""h2spec, the public HTTP/2 conformance suite, against every kind of listener (issue 12).

The gateway (plaintext h2c with prior knowledge, and TLS with ALPN ``h2``) and
a sidecar's upstream port must pass all 146 cases (h2spec 2.6.0 without
``--strict``).  The binary is looked for beside the repository
(``../shared/tools/h2spec``), then on PATH; without either the test skips.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.meshproc import REPO, MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"
CASES = 146


def _h2spec() -> str:
    beside = REPO.parent / "shared" / "tools" / "h2spec"
    if beside.is_file():
        return str(beside)
    on_path = shutil.which("h2spec")
    if on_path is None:
        pytest.skip(f"h2spec not found: neither {beside} nor an h2spec on PATH")
    return on_path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("h2spec")
    python = sys.executable
    echo = APPS / "versioned_echo.py"
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get

mesh = Mesh("h2spec")
mesh.service("echo", run="{python} {echo}", health=http_get("/healthz", period="100ms"))
mesh.service("front", run="{python} {echo}", upstreams=["echo"],
             health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, tls_port=0, routes={{"/": "echo"}})
"""
    )
    with running_mesh(workdir, meshfile) as process:
        yield process


def _run_h2spec(port: int, *, tls: bool) -> None:
    command = [_h2spec(), "-h", "127.0.0.1", "-p", str(port), "-o", "5"]
    if tls:
        command += ["-t", "-k"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    summary = re.search(r"(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed", output)
    assert summary is not None, output[-3000:]
    total, passed = int(summary.group(1)), int(summary.group(2))
    failures = output.partition("Failures:")[2]
    assert (passed, total) == (CASES, CASES), failures[-6000:] or output[-3000:]


def test_h2spec_on_the_plaintext_gateway(mesh: MeshProcess) -> None:
    _run_h2spec(urlsplit(mesh.gateway_url()).port or 80, tls=False)


def test_h2spec_on_the_tls_gateway(mesh: MeshProcess) -> None:
    tls_url = mesh.status()["gateways"][0]["tls_url"]
    _run_h2spec(urlsplit(tls_url).port or 443, tls=True)


def test_h2spec_on_an_upstream_port(mesh: MeshProcess) -> None:
    _run_h2spec(mesh.instance("front-0")["upstream_ports"]["echo"], tls=False)


def test_a_connection_error_ends_with_a_fin_even_with_unread_bytes(mesh: MeshProcess) -> None:
    """Lingering close: the GOAWAY reaches a client that keeps sending (no TCP reset)."""
    port = urlsplit(mesh.gateway_url()).port or 80
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    bad_ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x03" + b"\x00" * 8  # PING on stream 3
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(preface + bad_ping + b"\x00" * 200_000)  # more than the server reads
        received = b""
        while chunk := client.recv(65536):  # a reset raises ConnectionResetError here
            received += chunk
    frames, offset = [], 0
    while offset + 9 <= len(received):
        length = int.from_bytes(received[offset : offset + 3], "big")
        frames.append(received[offset + 3])
        offset += 9 + length
    assert 7 in frames, f"no GOAWAY among frame types {frames}"
