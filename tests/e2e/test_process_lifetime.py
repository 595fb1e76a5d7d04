"""Every process of a mesh dies when the mesh stops, and every app is given its grace.

Real ``meshkit up`` processes; what is left is read from ``/proc`` through
the environment mark every process of a test mesh inherits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.meshproc import REPO, MeshProcess

pytestmark = pytest.mark.e2e

APPS = REPO / "tests" / "e2e" / "apps"


def write_meshfile(path: Path, body: str) -> Path:
    meshfile = path / "Meshfile.py"
    meshfile.write_text("from meshkit import Mesh\n\nmesh = Mesh('lifetime')\n" + textwrap.dedent(body))
    return meshfile


def events(marker: Path) -> list[tuple[str, float]]:
    """``(instance event, epoch)`` for each line the stubborn apps wrote."""
    lines = [line.rsplit(" ", 1) for line in marker.read_text().splitlines()]
    return [(what, float(at)) for what, at in lines]


def meshkit_down(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "down"],
        cwd=workdir, capture_output=True, text=True, timeout=60, check=False,
    )


def test_an_app_under_a_shell_gets_its_whole_grace(tmp_path: Path) -> None:
    marker = tmp_path / "stubborn.events"
    meshfile = write_meshfile(tmp_path, f"""
        mesh.service("slow", run="python {APPS}/stubborn.py",
                     env={{"STUBBORN_MARKER": "{marker}", "STUBBORN_EXIT_AFTER": "3"}})
    """)
    mesh = MeshProcess(meshfile, tmp_path, "--grace", "8", "--no-watch")
    try:
        mesh.wait_ready(timeout=60)
        assert meshkit_down(tmp_path).returncode == 0
        assert mesh.proc.wait(30) == 0
        mesh.wait_no_processes(timeout=5)
        seen = events(marker)
        assert [what for what, _ in seen] == ["slow-0 term", "slow-0 clean exit"], seen
        assert seen[1][1] - seen[0][1] > 2.9  # it was not killed before it was done
    finally:
        mesh.kill_everything()


def test_stubborn_instances_stop_in_one_grace_period(tmp_path: Path) -> None:
    marker = tmp_path / "stubborn.events"
    services = "".join(
        f'mesh.service("{name}", run="python {APPS}/stubborn.py", replicas=2, '
        f'env={{"STUBBORN_MARKER": "{marker}"}})\n'
        for name in ("one", "two", "three")
    )
    mesh = MeshProcess(write_meshfile(tmp_path, services), tmp_path, "--grace", "5", "--no-watch")
    try:
        mesh.wait_ready(timeout=90)
        assert meshkit_down(tmp_path).returncode == 0
        assert mesh.proc.wait(90) == 0
        stopped_at = time.time()
        mesh.wait_no_processes(timeout=5)
        seen = events(marker)
        assert len(seen) == 6  # every instance saw its SIGTERM
        terms = sorted(at for _, at in seen)
        took = stopped_at - terms[0]
        assert took > 4.5, f"stopped after {took:.1f}s: the grace (5 s) was cut short"
        # In one grace period, not one per service: every instance got its SIGTERM
        # before the first one's grace ran out (stopping them one service after the
        # other would put 5 s between them).  Ordering, not wall time: holds under load.
        spread = terms[-1] - terms[0]
        assert spread < 5, f"the last SIGTERM came {spread:.1f}s after the first (--grace 5)"
        print(f"\nsix stubborn instances: SIGTERMs within {spread:.2f}s, stopped in {took:.1f}s")
    finally:
        mesh.kill_everything()


def daemon_mesh(tmp_path: Path) -> tuple[MeshProcess, Path]:
    pidfile = tmp_path / "daemon.pid"
    meshfile = write_meshfile(tmp_path, f"""
        mesh.service("forker", run="python {APPS}/daemonizer.py",
                     env={{"DAEMON_PIDFILE": "{pidfile}"}})
    """)
    mesh = MeshProcess(meshfile, tmp_path, "--grace", "2", "--no-watch")
    mesh.wait_ready(timeout=60)
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return mesh, pidfile


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_daemonised_grandchild_does_not_survive_meshkit_down(tmp_path: Path) -> None:
    mesh, pidfile = daemon_mesh(tmp_path)
    try:
        daemon = int(pidfile.read_text())
        assert alive(daemon)
        assert meshkit_down(tmp_path).returncode == 0
        assert mesh.proc.wait(20) == 0, "meshkit up did not exit after meshkit down"
        mesh.wait_no_processes(timeout=5)
        assert not alive(daemon)
    finally:
        mesh.kill_everything()


def test_a_daemonised_grandchild_does_not_survive_a_sigkill_of_meshkit_up(
    tmp_path: Path,
) -> None:
    mesh, pidfile = daemon_mesh(tmp_path)
    try:
        daemon = int(pidfile.read_text())
        assert alive(daemon)
        mesh.proc.send_signal(signal.SIGKILL)
        mesh.proc.wait()
        mesh.wait_no_processes(timeout=5)
        assert not alive(daemon)
    finally:
        mesh.kill_everything()


def test_a_replaced_instance_takes_its_daemon_with_it(tmp_path: Path) -> None:
    mesh, pidfile = daemon_mesh(tmp_path)
    try:
        daemon = int(pidfile.read_text())
        pidfile.unlink()
        restart = subprocess.run(
            [sys.executable, "-m", "meshkit.cli", "restart", "forker"],
            cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False,
        )
        assert restart.returncode == 0, restart.stdout + restart.stderr
        deadline = time.monotonic() + 10
        while alive(daemon) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(daemon)
        assert pidfile.exists()  # the replacement left its own
        assert alive(int(pidfile.read_text()))
        assert os.getpid() != daemon
    finally:
        mesh.kill_everything()
