"""``meshkit up`` as a server the benchmark owns, timed to all-ready, and its memory.

``start_mesh`` starts ``python -m meshkit.cli up`` in the Meshfile's directory
(``--gateway-port 0``, any extra flags), owned by a ``Servers`` stack: it gets
SIGINT when the stack closes (as from Ctrl-C), and whatever of it is still
alive after the grace period is killed, including processes that moved to
process groups of their own.  ``wait_all_ready`` polls the control socket
until every instance is healthy and every sidecar SYNCED.

The mesh's own processes are ``meshkit up`` (the control plane) and every
process below it except the apps' trees: the guardian and every sidecar,
the gateway's included.  Their memory is read from ``/proc/PID/smaps_rollup``:
PSS (each shared page divided among the processes that map it, so a sum over
processes counts it once) beside RSS (each process counted whole).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from hopbench.procs import BenchError, Server, Servers, descendants, log_tail

from .control import all_ready, app_pids, instances, read_status

POLL_SECONDS = 0.02
READY_TIMEOUT_SECONDS = 120.0


def start_mesh(
    servers: Servers,
    meshfile: Path,
    *,
    env: Mapping[str, str],
    flags: Sequence[str] = ("--no-watch",),
) -> Server:
    # ``meshkit up`` refuses --gateway-port for a Meshfile without a gateway.
    gateway = ["--gateway-port", "0"] if "mesh.gateway(" in meshfile.read_text() else []
    return servers.start(
        name="meshkit up",
        argv=[sys.executable, "-m", "meshkit.cli", "up", "-f", str(meshfile), *gateway, *flags],
        cwd=meshfile.parent,
        log_path=meshfile.parent / "meshkit-up.log",
        env=env,
        stop_signal=signal.SIGINT,
    )


def wait_all_ready(
    up: Server, directory: Path, *, expected_instances: int, timeout: float = READY_TIMEOUT_SECONDS
) -> Mapping[str, Any]:
    """Poll until every instance is healthy and every sidecar SYNCED; the status then."""
    deadline = time.monotonic() + timeout
    status: Mapping[str, Any] | None = None
    while time.monotonic() < deadline:
        up.ensure_running()
        status = read_status(directory)
        if all_ready(status, expected_instances=expected_instances):
            assert status is not None
            return status
        time.sleep(POLL_SECONDS)
    raise BenchError(
        f"the mesh in {directory} was not all-ready within {timeout:.0f} s; "
        f"{not_ready(status, directory)}; meshkit up's log ends with:\n{log_tail(up.log_path)}"
    )


def not_ready(status: Mapping[str, Any] | None, directory: Path) -> str:
    """What kept a mesh from all-ready: its errors, each lagging instance and its app's log."""
    if status is None:
        return "its control socket never answered"
    lines = [f"errors: {status.get('errors')}"]
    for record in instances(status):
        if record.get("state") != "healthy" or record.get("sync") != "SYNCED":
            lines.append(
                f"{record.get('id')}: {record.get('state')}, {record.get('sync')}, "
                f"{record.get('restarts')} restarts, port {record.get('port')}; its log ends with:\n"
                + log_tail(directory / ".meshkit" / "logs" / f"{record.get('id')}.log", 5)
            )
    return "\n".join(lines)


def time_to_ready(
    servers: Servers, meshfile: Path, *, env: Mapping[str, str], expected_instances: int
) -> tuple[float, Server, Mapping[str, Any]]:
    """Seconds from starting ``meshkit up`` to all-ready, the server and the ready status."""
    started = time.monotonic()
    up = start_mesh(servers, meshfile, env=env)
    status = wait_all_ready(up, meshfile.parent, expected_instances=expected_instances)
    return time.monotonic() - started, up, status


@attrs.frozen(kw_only=True)
class Memory:
    """Summed over a set of processes, in bytes."""

    processes: int
    pss_bytes: int
    rss_bytes: int


def _rollup(pid: int) -> tuple[int, int] | None:
    """(PSS, RSS) of one process in bytes, or None if it is gone."""
    values: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss", "Rss"):
                values[key] = int(rest.split()[0]) * 1024
    if "Pss" not in values:
        return None
    return values["Pss"], values["Rss"]


def mesh_pids(up: Server, status: Mapping[str, Any]) -> list[int]:
    """``meshkit up`` and every process below it, less the apps and their children."""
    apps = {pid for app in app_pids(status) for pid in descendants(app)}
    return [pid for pid in descendants(up.pid) if pid not in apps]


def memory_of(pids: Sequence[int]) -> Memory:
    readings = [reading for reading in map(_rollup, pids) if reading is not None]
    if not readings:
        raise BenchError(f"none of the processes {list(pids)} could be read in /proc")
    return Memory(
        processes=len(readings),
        pss_bytes=sum(pss for pss, _ in readings),
        rss_bytes=sum(rss for _, rss in readings),
    )
