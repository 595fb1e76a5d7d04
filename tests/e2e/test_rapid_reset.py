"""Rapid reset (CVE-2023-44487) from a client that reconnects, against a real mesh (issue 12).

Each flood connection sends HEADERS and RST_STREAM pairs until the gateway
ends it, then reconnects.  The streams it resets must cost nothing after
the reset: none reaches the app (``/_stats`` counts what arrived), the
gateway's memory comes back to its baseline once it is quiet, and a normal request made during the flood is
answered.  The numbers are printed (``pytest -s``) for the record; the
asserts leave room for a loaded machine.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from h2.errors import ErrorCodes

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"
FLOOD_SECONDS = 6.0
FLOOD_THREADS = 2
PAIRS_PER_WRITE = 100
RSS_TOLERANCE_KIB = 12 * 1024
SETTLE_SECONDS = 60.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("rapid_reset")
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get

mesh = Mesh("rapid-reset")
mesh.service("echo", run="{sys.executable} {APPS / "versioned_echo.py"}",
             health=http_get("/healthz", period="500ms"))
mesh.gateway(port=0, routes={{"/": "echo"}})
"""
    )
    with running_mesh(workdir, meshfile) as process:
        yield process


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _app_total(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/_stats")
        return int(json.loads(connection.getresponse().read())["total"])
    finally:
        connection.close()


def _flood_connection(port: int, stop: threading.Event) -> int:
    """HEADERS+RST_STREAM pairs on one connection until the gateway ends it; the pairs sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    fields = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", b"/flood?sleep=3"),
    ]
    sent = 0
    try:
        sock.sendall(client.data_to_send())
        sock.settimeout(0.0)
        while not stop.is_set():
            for _ in range(PAIRS_PER_WRITE):
                stream_id = client.get_next_available_stream_id()
                client.send_headers(stream_id, fields, end_stream=True)
                client.reset_stream(stream_id, ErrorCodes.CANCEL)
            sock.sendall(client.data_to_send())
            sent += PAIRS_PER_WRITE
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data or any(
                isinstance(event, h2.events.ConnectionTerminated)
                for event in client.receive_data(data)
            ):
                break
    except (OSError, h2.exceptions.ProtocolError):
        pass
    finally:
        sock.close()
    return sent


def _probe(port: int) -> float:
    """One normal HTTP/1.1 request on a fresh connection: its latency in seconds."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/probe")
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
    finally:
        connection.close()
    return time.monotonic() - started


def test_a_reconnecting_rapid_reset_flood_costs_nothing_after_each_reset(
    mesh: MeshProcess,
) -> None:
    port = urlsplit(mesh.gateway_url()).port
    assert port is not None
    gateway_pid = mesh.status()["gateways"][0]["pid"]
    _probe(port)
    baseline_rss = _rss_kib(gateway_pid)
    before = _app_total(port)

    stop = threading.Event()
    pairs: list[int] = []

    def flood() -> None:
        total = 0
        while not stop.is_set():
            total += _flood_connection(port, stop)
        pairs.append(total)

    threads = [threading.Thread(target=flood) for _ in range(FLOOD_THREADS)]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    peak_rss = baseline_rss
    try:
        deadline = time.monotonic() + FLOOD_SECONDS
        time.sleep(0.5)
        while time.monotonic() < deadline:
            latencies.append(_probe(port))
            peak_rss = max(peak_rss, _rss_kib(gateway_pid))
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    after_latency = _probe(port)
    time.sleep(4)  # longer than the flood's ?sleep=3: anything forwarded has been counted
    forwarded = _app_total(port) - before - len(latencies) - 1
    # The sidecar trims its heap once it is quiet (meshkit.proxy.memory): wait for it.
    settled_rss = _rss_kib(gateway_pid)
    settle_deadline = time.monotonic() + SETTLE_SECONDS
    while settled_rss > baseline_rss + RSS_TOLERANCE_KIB and time.monotonic() < settle_deadline:
        time.sleep(0.5)
        settled_rss = _rss_kib(gateway_pid)
    print(
        f"\nrapid reset: {sum(pairs)} reset streams in {FLOOD_SECONDS:g}s; forwarded to the app "
        f"{forwarded}; probes during the flood: {len(latencies)}, median "
        f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"after: {after_latency * 1000:.0f} ms; gateway RSS {baseline_rss} KiB -> peak "
        f"{peak_rss} KiB -> {settled_rss} KiB"
    )
    assert sum(pairs) > 1000, "the flood did not get going"
    # A stream reset in the packet that opened it is never forwarded; one reset a
    # moment later may be, but is cancelled at once.
    assert forwarded <= sum(pairs) // 100, forwarded
    # Under a second on an idle machine (see the printed numbers); the bound
    # leaves room for a loaded one, and still fails a starved gateway.
    assert latencies, "no probe completed during the flood"
    assert statistics.median(latencies) < 3.0, latencies
    assert after_latency < 3.0
    # Back to the baseline, within what the heap keeps for its survivors (a few MiB;
    # before the trim the allocators kept the peak, +60 MiB, and before the fix of
    # the flood itself one grew it by 1.9 GB).
    assert settled_rss <= baseline_rss + RSS_TOLERANCE_KIB, (baseline_rss, peak_rss, settled_rss)
