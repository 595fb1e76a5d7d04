"""Starting and stopping ``meshkit up`` for a test session.

Every mesh runs as a real ``meshkit up`` subprocess in a state directory of
its own (a fresh directory under the system temp dir: short enough for the
Unix socket path limit, and never shared by two runs or two xdist workers),
with the gateway on ephemeral ports and the test ingress added, so nothing a
Meshfile says about ports can make two runs collide.

The lifeline: ``meshkit up --exit-with-parent`` stops the mesh when its stdin
reaches end of file, and the only writer of that pipe is this process.  When
pytest exits in any way, SIGKILL included, the kernel closes the pipe and the
mesh shuts down; its orphan guardian covers the case where ``meshkit up``
itself is killed.  Unlike PR_SET_PDEATHSIG, this does not depend on which
thread started the process, and needs no ``preexec_fn``.

A run killed by a signal cannot remove its directory (the mesh's CA root key
is inside): each directory names its owning pytest in ``owner.pid``, and
``sweep_dead_runs`` (called as the plugin starts) removes this user's
directories whose owner is gone and whose mesh no longer runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import attrs

from meshkit.api.control import ControlPlaneError
from meshkit.dsl.spec import GatewaySpec
from meshkit.testing.status import (
    StatusDocument,
    describe_unhealthy,
    fetch_status,
    log_tail,
)

DIRECTORY_PREFIX = "meshkit-test-"
OWNER_FILE = "owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(directory: Path) -> bool:
    """A directory of a dead run: ours, its owner gone, its ``meshkit up`` gone too."""
    try:
        if directory.stat().st_uid != os.getuid() or not directory.is_dir():
            return False
        owner = int((directory / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return False
    if _alive(owner):
        return False
    try:
        up_pid = int((directory / ".meshkit" / "run" / "meshkit.pid").read_text().strip())
    except (OSError, ValueError):
        return True
    return not _alive(up_pid)  # a mesh left running by --meshkit-keep stays


def sweep_dead_runs(temp_dir: Path | None = None) -> list[Path]:
    """Remove what dead test runs left in ``temp_dir`` (the system's); return what went."""
    where = Path(tempfile.gettempdir()) if temp_dir is None else temp_dir
    removed = []
    for directory in sorted(where.glob(f"{DIRECTORY_PREFIX}*")):
        if _abandoned(directory):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


class MeshStartError(Exception):
    """The mesh did not start, or did not become healthy in time."""


@attrs.frozen(kw_only=True)
class LaunchOptions:
    """How the plugin starts a mesh; the defaults suit a test suite."""

    ready_timeout: float = 60.0
    grace: float = 3.0
    log_lines: int = 40
    keep: bool = False
    python: str = sys.executable


def up_argv(
    meshfile: Path,
    services: tuple[str, ...],
    options: LaunchOptions,
    *,
    gateway: GatewaySpec | None = None,
) -> list[str]:
    """The ``meshkit up`` command line for a test mesh; ``gateway``, the Meshfile's, gets
    ephemeral ports (HTTPS only when it declares ``tls_port``)."""
    argv = [options.python, "-m", "meshkit.cli", "up", "-f", os.fspath(meshfile), *services]
    if gateway is not None:
        argv += ["--gateway-port", "0"]
        if gateway.tls_port is not None:
            argv += ["--gateway-tls-port", "0"]
    argv += ["--ingress", "--no-watch"]
    argv += ["--grace", f"{options.grace:g}"]
    if not options.keep:
        argv.append("--exit-with-parent")
    return argv


class MeshProcess:
    """One ``meshkit up`` subprocess and its state directory; stop() ends both."""

    def __init__(
        self,
        *,
        meshfile: Path,
        services: tuple[str, ...],
        options: LaunchOptions,
        gateway: GatewaySpec | None = None,
    ) -> None:
        self.meshfile = meshfile
        self.services = services
        self.options = options
        self.workdir = Path(tempfile.mkdtemp(prefix=DIRECTORY_PREFIX))
        (self.workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.state_dir = self.workdir / ".meshkit"
        self.output_path = self.workdir / "meshkit-up.out"
        self.control_socket = self.state_dir / "run" / "control.sock"
        self._output: IO[bytes] = open(self.output_path, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            up_argv(meshfile, services, options, gateway=gateway),
            cwd=self.workdir,
            env=dict(os.environ, NO_COLOR="1"),
            stdin=subprocess.DEVNULL if options.keep else subprocess.PIPE,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            # A kept mesh outlives pytest: keep it out of the terminal's Ctrl-C.
            start_new_session=options.keep,
        )

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    def output_tail(self, lines: int | None = None) -> str:
        return log_tail(self.output_path, lines or self.options.log_lines)

    def wait_ready(self) -> StatusDocument:
        """Block until every instance is healthy; ``MeshStartError`` says why not."""
        deadline = time.monotonic() + self.options.ready_timeout
        status: StatusDocument | None = None
        while time.monotonic() < deadline:
            if not self.running():
                raise MeshStartError(
                    f"meshkit up -f {self.meshfile} exited with status {self._process.returncode} "
                    f"before the mesh was ready; its output ends with:\n{self.output_tail()}"
                )
            try:
                status = fetch_status(self.control_socket, wait_ready=True)
            except ControlPlaneError:
                status = None
                time.sleep(0.05)  # no control socket yet
            if status is not None and status.get("ready"):
                return status
        report = describe_unhealthy(
            status, None, logs_dir=self.logs_dir, lines=self.options.log_lines
        )
        raise MeshStartError(
            f"the mesh of {self.meshfile} was not healthy after "
            f"{self.options.ready_timeout:g}s:\n{report}"
        )

    def stop(self) -> int | None:
        """Stop the mesh (SIGTERM, then SIGKILL if it overstays) and remove its state."""
        try:
            if self.running():
                self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(self.options.grace + 15.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        finally:
            self._close_pipes()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self._process.returncode

    def leave_running(self) -> None:
        """Let go of the mesh (for ``--meshkit-keep``): it keeps running after pytest."""
        self._close_pipes()
        # The mesh is deliberately left running: mark it reaped so that
        # Popen's finaliser does not warn about a child that is still alive.
        self._process.returncode = 0

    def _close_pipes(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        if not self._output.closed:
            self._output.close()
