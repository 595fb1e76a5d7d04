"""What a running mesh holds in memory, as a laptop feels it: PSS, beside RSS.

    python benchmarks/memory.py [--rounds 3] [--settle 2] [--bytecode] [--json FILE] [--keep]

Each round starts the example shop (a temporary copy, ``--gateway-port 0
--no-watch``), waits for all-ready and ``--settle`` seconds more, and sums
``Pss`` and ``Rss`` of ``/proc/PID/smaps_rollup`` over the mesh's processes:
``meshkit up`` (the control plane), the guardian, the sidecar template and
every sidecar, the gateway's included; the apps and their children are left out.  Then the same
mesh with one more replica of catalog v1, and the difference: what one more
sidecar costs (with PSS, the pages it shares with the others are divided
among them all, so the difference of the sums is what it adds).

Targets: the example's whole mesh <= 120 MB PSS; one more sidecar <= 12 MB
PSS (MB = 10^6 bytes).  Medians over the rounds.  Not a test; CI does not run it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hopbench.procs import Servers
from meshbench.figures import Figure, common_parser, run_command
from meshbench.meshes import copy_example, example_instances
from meshbench.running import Memory, memory_of, mesh_pids, time_to_ready

TARGET_MESH_PSS_MB = 120.0
TARGET_ONE_MORE_SIDECAR_PSS_MB = 12.0
MB = 1e6


def mesh_memory(workdir: Path, env: dict[str, str], *, extra: int, settle: float) -> Memory:
    meshfile = copy_example(workdir, extra_catalog_replicas=extra)
    with Servers() as servers:
        _, up, status = time_to_ready(
            servers, meshfile, env=env, expected_instances=example_instances(extra)
        )
        time.sleep(settle)
        return memory_of(mesh_pids(up, status))


def measure(args: argparse.Namespace, root: Path, env: dict[str, str]) -> list[Figure]:
    whole: list[Memory] = []
    bigger: list[Memory] = []
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}/{args.rounds} ...", file=sys.stderr, flush=True)
        whole.append(
            mesh_memory(root / f"round{round_number}", env, extra=0, settle=args.settle)
        )
        bigger.append(
            mesh_memory(root / f"round{round_number}-plus1", env, extra=1, settle=args.settle)
        )
    processes = {"example": [m.processes for m in whole], "plus one": [m.processes for m in bigger]}
    return [
        Figure(
            name="example shop's mesh, PSS",
            unit="MB",
            target=TARGET_MESH_PSS_MB,
            samples=tuple(m.pss_bytes / MB for m in whole),
            details={"processes": processes},
        ),
        Figure(
            name="example shop's mesh, RSS",
            unit="MB",
            target=None,
            samples=tuple(m.rss_bytes / MB for m in whole),
        ),
        Figure(
            name="one more sidecar, PSS",
            unit="MB",
            target=TARGET_ONE_MORE_SIDECAR_PSS_MB,
            samples=tuple((b.pss_bytes - w.pss_bytes) / MB for w, b in zip(whole, bigger, strict=True)),
        ),
        Figure(
            name="one more sidecar, RSS",
            unit="MB",
            target=None,
            samples=tuple((b.rss_bytes - w.rss_bytes) / MB for w, b in zip(whole, bigger, strict=True)),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_parser(
        "python benchmarks/memory.py", "PSS and RSS of a running mesh.", default_rounds=3
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds after all-ready (default 2)"
    )
    args = parser.parse_args(argv)
    if args.settle < 0:
        parser.error("--settle must not be negative")
    return run_command("memory", args, measure)


if __name__ == "__main__":
    sys.exit(main())
