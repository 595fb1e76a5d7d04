"""Sidecars forked from the template: real ``meshkit up``, real mTLS, ``/proc`` read.

The template (``python -m meshkit.proxy.template``) is a child of ``meshkit up``;
each sidecar it forks is adopted by ``meshkit up`` and must behave as a spawned
one does: its own key, its own session and owner tag, its true exit status, no
survival past the mesh; and when the template is gone, sidecars are spawned.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshkit.api.template import OWNER_FILLER
from meshkit.runtime import lineage
from tests.meshproc import MeshProcess

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent / "apps" / "identity_echo.py"


def write_meshfile(directory: Path) -> Path:
    meshfile = directory / "Meshfile.py"
    run = f"python {APP}"
    meshfile.write_text(
        "from meshkit import Mesh, http_get\n"
        "mesh = Mesh('forks', mtls='strict')\n"
        f"mesh.service('back', run={run!r}, health=http_get('/healthz'), replicas=2)\n"
        f"mesh.service('front', run={run!r}, health=http_get('/healthz'), upstreams=['back'])\n"
        "mesh.gateway(port=0, routes={'/': 'front'})\n"
    )
    return meshfile


@pytest.fixture
def forks_mesh(tmp_path: Path) -> Iterator[MeshProcess]:
    mesh = MeshProcess(write_meshfile(tmp_path), tmp_path, "--no-watch")
    try:
        mesh.wait_ready(timeout=90)
        yield mesh
    finally:
        mesh.kill_everything()


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def template_pid(mesh: MeshProcess) -> int:
    """The template: the child of meshkit up whose owner tag still has its filler."""
    children = lineage.children_of(mesh.proc.pid)
    found = [pid for pid in children if (lineage.owner_of(pid) or "").endswith(OWNER_FILLER)]
    assert len(found) == 1, {pid: lineage.owner_of(pid) for pid in children}
    assert "meshkit.proxy.template" in cmdline(found[0])
    return found[0]


def sidecar_pids(mesh: MeshProcess) -> dict[str, int]:
    return {
        instance["id"]: instance["sidecar_pid"]
        for service in mesh.status()["services"]
        for instance in service["instances"]
    }


def served_public_key(port: int) -> bytes:
    """The public key of the certificate a strict inbound port presents (no client cert:
    TLS 1.3 shows the server's certificate before it asks for ours)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    key = x509.load_der_x509_certificate(der).public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_forked_sidecars_serve_mtls_with_keys_and_tags_of_their_own(
    forks_mesh: MeshProcess,
) -> None:
    template = template_pid(forks_mesh)
    sidecars = sidecar_pids(forks_mesh)
    assert len(sidecars) == 3
    owners = set()
    for pid in sidecars.values():
        # Forked (the template's command line), adopted by meshkit up, its own session.
        assert "meshkit.proxy.template" in cmdline(pid)
        assert parent_of(pid) == forks_mesh.proc.pid
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid
        owners.add(lineage.owner_of(pid))
    assert len(owners) == 3 and lineage.owner_of(template) not in owners
    run = (lineage.owner_of(template) or "").split(".")[0]
    assert len(run) == 16 and all(owner and owner.startswith(run + ".") for owner in owners)

    keys = {served_public_key(forks_mesh.instance(i)["inbound_port"]) for i in sidecars}
    assert len(keys) == 3, "two forked sidecars share a key"

    answer = subprocess.run(
        ["curl", "-sS", "--max-time", "20", forks_mesh.gateway_url() + "/via/back/whoami"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["upstream"]["service"] == "back"

    assert forks_mesh.stop() == 130
    forks_mesh.wait_no_processes(timeout=10)


def wait_new_sidecar(mesh: MeshProcess, instance: str, old: int) -> int:
    status = mesh.wait_until(
        lambda s: any(
            i["id"] == instance and i["sidecar_pid"] not in (None, old) and i["state"] == "healthy"
            for svc in s["services"]
            for i in svc["instances"]
        ),
        timeout=60,
    )
    del status
    return int(mesh.instance(instance)["sidecar_pid"])


def test_a_killed_sidecar_is_reported_and_restarted_then_spawned_without_the_template(
    forks_mesh: MeshProcess,
) -> None:
    old = forks_mesh.instance("back-0")["sidecar_pid"]
    os.kill(old, signal.SIGKILL)
    new = wait_new_sidecar(forks_mesh, "back-0", old)
    assert "back-0: sidecar exited with status -9" in forks_mesh.output()
    assert "meshkit.proxy.template" in cmdline(new)

    os.kill(template_pid(forks_mesh), signal.SIGKILL)
    old = forks_mesh.instance("back-1")["sidecar_pid"]
    os.kill(old, signal.SIGTERM)
    spawned = wait_new_sidecar(forks_mesh, "back-1", old)
    assert "back-1: sidecar exited with status 0" in forks_mesh.output()
    assert "meshkit.proxy --instance back-1" in cmdline(spawned)
    assert "the sidecar template is unavailable" in forks_mesh.output()

    answer = subprocess.run(
        ["curl", "-sS", "--max-time", "20", forks_mesh.gateway_url() + "/via/back/whoami"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr


def test_forked_sidecars_die_with_a_killed_control_plane(forks_mesh: MeshProcess) -> None:
    sidecars = sidecar_pids(forks_mesh)
    assert all("meshkit.proxy.template" in cmdline(pid) for pid in sidecars.values())
    forks_mesh.proc.send_signal(signal.SIGKILL)
    forks_mesh.proc.wait()
    forks_mesh.wait_no_processes(timeout=10)
    deadline = time.monotonic() + 10
    while alive := [pid for pid in sidecars.values() if running(pid)]:
        assert time.monotonic() < deadline, f"forked sidecars {alive} outlived the control plane"
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Alive and not a zombie (a test process that became a subreaper adopts the dead)."""
    lineage.reap([pid])
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
