"""The CLI and the example apps tell the truth, as processes (issue 13).

``meshkit --version``; ``-C DIR``; no traceback into a closed pipe; a mesh
that does not accept in time is reported as slow, not as absent; ``-1s`` is
negative; the example apps answer each keep-alive request in one write.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
MESHFILE = """\
from meshkit import Mesh

mesh = Mesh("truth")
mesh.service("a", run="sleep 60")
"""


def meshkit_cli(*argv: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit.cli", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )


def test_version_names_the_installed_meshkit(tmp_path: Path) -> None:
    shown = meshkit_cli("--version", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"meshkit {version('meshkit')}"


def test_dash_c_runs_the_command_in_that_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Meshfile.py").write_text(MESHFILE)
    checked = meshkit_cli("-C", str(project), "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("Meshfile.py: ok (1 service")
    absent = meshkit_cli("--dir", str(project), "status", cwd=tmp_path)
    assert absent.returncode == 1
    assert f"no mesh is running in {project}" in absent.stderr
    missing = meshkit_cli("-C", str(tmp_path / "nowhere"), "status", cwd=tmp_path)
    assert missing.returncode == 2
    assert "nowhere" in missing.stderr


def test_output_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    (tmp_path / "Meshfile.py").write_text(MESHFILE)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        ended = subprocess.run(
            [sys.executable, "-m", "meshkit.cli", "spec"],
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in ended.stderr, ended.stderr
    assert ended.stderr == ""
    assert ended.returncode == 141


@pytest.fixture
def unresponsive_control_plane(tmp_path: Path) -> Iterator[Path]:
    """A control socket that never accepts, its backlog full: a stopped control plane."""
    run_dir = tmp_path / ".meshkit" / "run"
    run_dir.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(run_dir / "control.sock"))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.setblocking(False)
        try:
            filler.connect(str(run_dir / "control.sock"))
        except BlockingIOError:
            filler.close()
            break
        fillers.append(filler)
    try:
        yield tmp_path
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_mesh_slow_to_answer_is_reported_as_slow(unresponsive_control_plane: Path) -> None:
    started = time.monotonic()
    slow = meshkit_cli("status", cwd=unresponsive_control_plane)
    assert slow.returncode == 1
    assert "no mesh is running" not in slow.stderr
    assert "running but slow" in slow.stderr
    assert time.monotonic() - started < 30


def test_a_negative_duration_is_called_negative(tmp_path: Path) -> None:
    refused = meshkit_cli("fault", "a", "--delay=-1s", cwd=tmp_path)
    assert refused.returncode == 2
    assert "must not be negative" in refused.stderr
    assert "not a duration" not in refused.stderr


def _one_recv_responses(port: int, count: int) -> list[bytes]:
    """Send ``count`` keep-alive GETs; what the first ``recv`` after each gave."""
    first_reads = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for _ in range(count):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: example\r\n\r\n")
            first_reads.append(conn.recv(65536))
    return first_reads


@pytest.mark.parametrize("app", ["reviews.py", "catalog.py"])
def test_the_example_apps_answer_in_one_write(app: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PORT=str(port), MESHKIT_SERVICE="x")
    process = subprocess.Popen(
        [sys.executable, str(SHOP / app)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert "listening" in process.stdout.readline()
        for first_read in _one_recv_responses(port, 5):
            head, _, body = first_read.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert len(body) == length, first_read
    finally:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()
