"""How long a Meshfile save takes to reach every sidecar, on a 20-instance mesh.

    python benchmarks/reload.py [--rounds 1] [--saves 30] [--instances 20]
                                [--bytecode] [--json FILE] [--keep]

Each round starts ``meshkit up`` (watching, as a person runs it) on a
generated mesh of ``--instances`` tiny apps (two replicas per service, each
service calling the next, a route with a timeout on every service), waits
for all-ready, then saves the Meshfile ``--saves`` times, each save a route
edit (every route's timeout changes), 0.3 s after the previous reload ended.

A save's figure is the time from the write returning to the last sidecar's
ACK: the control plane records the wall-clock time at which the reload's last
sidecar answered (``reload.finished_at`` in ``/v1/status``), so the figure
has no polling error; it includes the watcher's grouping of the save's
events (20 ms without a change).  Beside it, the control plane's own
``duration_ms`` (change detected -> last ACK).  Target: p99 <= 250 ms.
Not a test; CI does not run it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hopbench.procs import BenchError, Server, Servers
from meshbench.control import read_status, reload_report
from meshbench.figures import Figure, common_parser, run_command
from meshbench.meshes import tiny_meshfile, write_tiny_mesh
from meshbench.running import POLL_SECONDS, not_ready, start_mesh, wait_all_ready

TARGET_P99_MS = 250.0
PAUSE_BETWEEN_SAVES_S = 0.3
RELOAD_TIMEOUT_S = 60.0


def wait_reloaded(up: Server, directory: Path, *, reloads_before: int) -> Mapping[str, Any]:
    """The reload report once the count has gone past ``reloads_before``.

    The control plane ends a reload when every sidecar has answered the new
    version (or says which did not, as the report's error)."""
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    status: Mapping[str, Any] | None = None
    while time.monotonic() < deadline:
        up.ensure_running()
        status = read_status(directory)
        report = reload_report(status)
        if int(report.get("reloads") or 0) > reloads_before:
            if report.get("error"):
                raise BenchError(f"the reload failed: {report['error']}")
            return report
        time.sleep(POLL_SECONDS)
    raise BenchError(
        f"no reload finished within {RELOAD_TIMEOUT_S:.0f} s of a save; "
        f"{not_ready(status, directory)}"
    )


def one_round(
    workdir: Path, env: dict[str, str], *, saves: int, services: int, phases: list[dict[str, float]]
) -> tuple[list[float], list[float]]:
    """(save -> last ACK, detected -> last ACK) in ms for each save of one mesh.

    Each reload's split (``phases_ms``: evaluate, publish, sync...) goes to ``phases``."""
    instances = services * 2
    meshfile = write_tiny_mesh(workdir, services=services, replicas=2)
    to_ack: list[float] = []
    detected_to_ack: list[float] = []
    with Servers() as servers:
        up = start_mesh(servers, meshfile, env=env, flags=())
        status = wait_all_ready(up, workdir, expected_instances=instances)
        reloads = int(reload_report(status).get("reloads") or 0)
        for revision in range(1, saves + 1):
            time.sleep(PAUSE_BETWEEN_SAVES_S)
            meshfile.write_text(tiny_meshfile(services=services, replicas=2, revision=revision))
            saved_at = time.time()
            report = wait_reloaded(up, workdir, reloads_before=reloads)
            reloads = int(report["reloads"])
            to_ack.append((float(report["finished_at"]) - saved_at) * 1000)
            detected_to_ack.append(float(report["duration_ms"]))
            phases.append(dict(report.get("phases_ms") or {}))
    return to_ack, detected_to_ack


def median_phases(phases: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median of each phase over the reloads (a phase a reload did not report counts 0)."""
    names = sorted({name for split in phases for name in split})
    return {name: statistics.median(split.get(name, 0.0) for split in phases) for name in names}


def measure(args: argparse.Namespace, root: Path, env: dict[str, str]) -> list[Figure]:
    to_ack: list[float] = []
    detected_to_ack: list[float] = []
    phases: list[dict[str, float]] = []
    services = (args.instances + 1) // 2
    for round_number in range(1, args.rounds + 1):
        print(
            f"round {round_number}/{args.rounds}: {services * 2} instances, {args.saves} saves ...",
            file=sys.stderr,
            flush=True,
        )
        saved, detected = one_round(
            root / f"round{round_number}", env, saves=args.saves, services=services, phases=phases
        )
        to_ack += saved
        detected_to_ack += detected
    print(f"median split of a reload (ms): {median_phases(phases)}", file=sys.stderr)
    subject = f"Meshfile save -> last sidecar ACK, {services * 2} instances"
    return [
        Figure(name=subject, unit="ms", target=None, samples=tuple(to_ack), statistic="p50"),
        Figure(name=subject, unit="ms", target=TARGET_P99_MS, samples=tuple(to_ack), statistic="p99"),
        Figure(
            name="change detected -> last ACK (status duration_ms)",
            unit="ms",
            target=None,
            samples=tuple(detected_to_ack),
            statistic="p99",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_parser(
        "python benchmarks/reload.py", "Meshfile save to the last sidecar's ACK.", default_rounds=1
    )
    parser.add_argument("--saves", type=int, default=30, help="saves per round (default 30)")
    parser.add_argument("--instances", type=int, default=20, help="instances (default 20)")
    args = parser.parse_args(argv)
    if args.saves < 1 or args.instances < 2:
        parser.error("--saves must be at least 1 and --instances at least 2")
    return run_command("reload", args, measure)


if __name__ == "__main__":
    sys.exit(main())
