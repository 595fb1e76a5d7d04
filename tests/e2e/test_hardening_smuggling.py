"""Request smuggling through ``Connection`` lists, against a real mesh (issue 12).

A client that names a framing or routing header in ``Connection``
(``Connection: content-length``) used to have that header deleted as
hop-by-hop while its body was still forwarded: the next sidecar read the body
as a second request on a pooled connection, and responses reached the wrong
clients.  Here one victim and two attackers share the gateway (and then an
upstream port of a sidecar) for a few seconds; every victim response must be
its own, and no attacker may ever see a victim's answer.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"
ATTACK_SECONDS = 3.0
SECRET = "Bearer victim-secret"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("smuggling")
    python = sys.executable
    echo = APPS / "versioned_echo.py"
    meshfile = workdir / "Meshfile.py"
    meshfile.write_text(
        f"""\
from meshkit import Mesh, http_get

mesh = Mesh("smuggling")
mesh.service("echo", run="{python} {echo}", health=http_get("/healthz", period="100ms"))
mesh.service("front", run="{python} {echo}", upstreams=["echo"],
             health=http_get("/healthz", period="100ms"))
mesh.gateway(port=0, routes={{"/": "echo"}})
"""
    )
    with running_mesh(workdir, meshfile) as process:
        yield process


def _smuggling_request(name: bytes) -> bytes:
    inner = b"GET /smuggled HTTP/1.1\r\nHost: echo\r\n\r\n"
    return (
        b"POST /attack HTTP/1.1\r\nHost: echo\r\nConnection: " + name + b"\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(inner), inner)
    )


def _read_response(sock: socket.socket) -> tuple[int, bytes] | None:
    """One response read from ``sock`` (status, body), or None when it closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


class _Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.victim_requests = 0
        self.victim_wrong: list[str] = []
        self.attacker_statuses: dict[int, int] = {}
        self.attacker_saw_victim = 0


def _victim(host: str, port: int, stop: threading.Event, tally: _Tally) -> None:
    serial = 0
    connection = http.client.HTTPConnection(host, port, timeout=10)
    while not stop.is_set():
        serial += 1
        try:
            connection.request(
                "GET", f"/victim?serial={serial}", headers={"Authorization": SECRET}
            )
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=10)
            with tally.lock:
                tally.victim_requests += 1
                tally.victim_wrong.append(f"#{serial}: {error!r}")
            continue
        with tally.lock:
            tally.victim_requests += 1
            try:
                answer = json.loads(body)
                own = answer["path"] == "/victim" and answer["query"] == f"serial={serial}"
            except (ValueError, KeyError, TypeError):
                own = False
            if response.status != 200 or not own:
                tally.victim_wrong.append(f"#{serial}: {response.status} {body[:120]!r}")
    connection.close()


def _attacker(host: str, port: int, stop: threading.Event, tally: _Tally, name: bytes) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(_smuggling_request(name))
                while True:
                    answer = _read_response(sock)
                    if answer is None:
                        break
                    status, body = answer
                    with tally.lock:
                        tally.attacker_statuses[status] = tally.attacker_statuses.get(status, 0) + 1
                        if b"victim" in body or SECRET.encode() in body:
                            tally.attacker_saw_victim += 1
        except OSError:
            continue


def _attack(host: str, port: int) -> _Tally:
    tally = _Tally()
    stop = threading.Event()
    threads = [threading.Thread(target=_victim, args=(host, port, stop, tally))]
    threads += [
        threading.Thread(target=_attacker, args=(host, port, stop, tally, name))
        for name in (b"content-length", b"Content-Length, close")
    ]
    for thread in threads:
        thread.start()
    time.sleep(ATTACK_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    return tally


def _assert_no_mix_up(tally: _Tally) -> None:
    assert tally.victim_requests > 20, "the victim barely got through; the attack proves nothing"
    assert tally.victim_wrong == [], (
        f"{len(tally.victim_wrong)} of {tally.victim_requests} victim requests got another "
        f"answer: {tally.victim_wrong[:5]}"
    )
    assert tally.attacker_saw_victim == 0
    assert set(tally.attacker_statuses) == {400}, tally.attacker_statuses


def test_no_cross_client_response_through_the_gateway(mesh: MeshProcess) -> None:
    parts = urlsplit(mesh.gateway_url())
    _assert_no_mix_up(_attack(parts.hostname or "127.0.0.1", parts.port or 80))


def test_no_cross_client_response_through_an_upstream_port(mesh: MeshProcess) -> None:
    port = mesh.instance("front-0")["upstream_ports"]["echo"]
    _assert_no_mix_up(_attack("127.0.0.1", port))


@pytest.mark.parametrize(
    "name", [b"host", b"content-length", b"transfer-encoding", b"te", b"keep-alive, Host"]
)
def test_a_connection_list_naming_a_framing_or_routing_header_is_refused(
    mesh: MeshProcess, name: bytes
) -> None:
    parts = urlsplit(mesh.gateway_url())
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: echo\r\nConnection: " + name + b"\r\n\r\n")
        answer = _read_response(sock)
    assert answer is not None
    assert answer[0] == 400, answer
