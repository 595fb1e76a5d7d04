"""Run ``meshkit up`` as a real subprocess and look at what it started.

Every process of a mesh started here carries the environment variable
``MESHKIT_TEST_MARK`` with a value unique to that mesh, so a test can prove
from ``/proc`` that nothing of it is left once it is stopped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def marked_pids(mark: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``mark``."""
    needle = f"MESHKIT_TEST_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class MeshProcess:
    """``meshkit up -f MESHFILE`` running in ``workdir`` (its ``.meshkit/`` lives there)."""

    def __init__(self, meshfile: Path, workdir: Path, *extra: str) -> None:
        self.meshfile = meshfile
        self.workdir = workdir
        self.mark = uuid.uuid4().hex
        self.log_path = workdir / "meshkit-up.out"
        env = dict(os.environ, MESHKIT_TEST_MARK=self.mark, NO_COLOR="1")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop()/kill_everything()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshkit.cli", "up", "-f", str(meshfile), *extra],
            cwd=workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def control_socket(self) -> Path:
        return self.workdir / ".meshkit" / "run" / "control.sock"

    @property
    def run_dir(self) -> Path:
        return self.workdir / ".meshkit" / "run"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = UnixHTTPConnection(self.control_socket)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"content-type": "application/json"} if payload else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        finally:
            conn.close()

    def status(self) -> dict[str, Any]:
        code, data = self.api("GET", "/v1/status")
        assert code == 200, data
        return data  # type: ignore[no-any-return]

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"meshkit up exited {self.proc.returncode}:\n{self.output()}")
            try:
                last = self.status()
                if last.get("ready"):
                    return last
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise AssertionError(f"mesh not ready after {timeout}s: {last}\n{self.output()}")

    def wait_until(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if predicate(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"condition not met after {timeout}s: {status}\n{self.output()}")

    def gateway_url(self) -> str:
        url: str = self.status()["gateways"][0]["url"]
        return url

    def instance(self, instance_id: str) -> dict[str, Any]:
        for service in self.status()["services"]:
            for inst in service["instances"]:
                if inst["id"] == instance_id:
                    return inst  # type: ignore[no-any-return]
        raise KeyError(instance_id)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def marked(self) -> list[int]:
        return marked_pids(self.mark)

    def wait_no_processes(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while marked_pids(self.mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marked_pids(self.mark) == [], "processes of the mesh survived"

    def kill_everything(self) -> None:
        """Last-resort cleanup so one broken test cannot leak into the next."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in marked_pids(self.mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not self._log.closed:
            self._log.close()


@contextlib.contextmanager
def running_mesh(
    workdir: Path, meshfile: Path, *extra: str, gateway_synced: bool = False
) -> Iterator[MeshProcess]:
    """``meshkit up -f MESHFILE`` in ``workdir``, ready, until the block ends (then killed).

    ``gateway_synced`` also waits until the gateway acknowledged its config.
    """
    process = MeshProcess(meshfile, workdir, *extra)
    try:
        process.wait_ready(timeout=60)
        if gateway_synced:
            process.wait_until(lambda s: s["gateways"] and s["gateways"][0]["sync"] == "SYNCED")
        yield process
    finally:
        process.kill_everything()


def example_meshfile(tmp_path: Path) -> Path:
    """The repository's example Meshfile, with an ephemeral gateway port and absolute paths."""
    text = (REPO / "meshfile.example.py").read_text()
    text = text.replace("port=8080", "port=0")
    text = text.replace('"examples/shop', f'"{REPO}/examples/shop')
    path = tmp_path / "Meshfile.py"
    path.write_text(text)
    return path
