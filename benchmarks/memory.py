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

Each mesh's PSS is also printed per role (control plane, template, guardian,
evaluator child, sidecars: count, sum and the mean of one) and kept in the
JSON, so that a change shows which process it moved.

Targets: the example's whole mesh <= 120 MB PSS; one more sidecar <= 12 MB
PSS (MB = 10^6 bytes).  Medians over the rounds.  Not a test; CI does not run it.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hopbench.procs import BenchError, Servers
from meshbench.figures import Figure, common_parser, run_command
from meshbench.meshes import copy_example, example_instances
from meshbench.running import Memory, memory_of, mesh_pids, time_to_ready

TARGET_MESH_PSS_MB = 120.0
TARGET_ONE_MORE_SIDECAR_PSS_MB = 12.0
MB = 1e6


# A process's role, from its command line (first match); the control plane is ``meshkit.cli``.
ROLES = (
    ("template", "meshkit.proxy.template"),
    ("guardian", "guardian"),
    ("evaluator", "meshkit.dsl.evaluate"),
    ("control plane", "meshkit.cli"),
)
SIDECAR = "sidecar"  # forked from the template (its command line) or spawned (meshkit.proxy)


def role_of(pid: int, first_template: int | None) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    for role, needle in ROLES:
        if needle in command:
            return role if role != "template" or pid == first_template else SIDECAR
    return SIDECAR


def pss_by_role(pids: Sequence[int]) -> dict[str, list[float]]:
    """PSS in MB of each process, by role; the template is the oldest of its command line."""
    templates = [pid for pid in pids if role_of(pid, pid) == "template"]
    first = min(templates) if templates else None
    roles: dict[str, list[float]] = {}
    for pid in pids:
        with contextlib.suppress(BenchError):
            roles.setdefault(role_of(pid, first), []).append(memory_of([pid]).pss_bytes / MB)
    return roles


def mesh_memory(
    workdir: Path, env: dict[str, str], *, extra: int, settle: float
) -> tuple[Memory, dict[str, list[float]]]:
    meshfile = copy_example(workdir, extra_catalog_replicas=extra)
    with Servers() as servers:
        _, up, status = time_to_ready(
            servers, meshfile, env=env, expected_instances=example_instances(extra)
        )
        time.sleep(settle)
        pids = mesh_pids(up, status)
        memory, roles = memory_of(pids), pss_by_role(pids)
    print(
        "  PSS by role (MB): "
        + "; ".join(
            f"{role} {sum(values):.1f}"
            + (f" ({len(values)} x {statistics.mean(values):.1f})" if len(values) > 1 else "")
            for role, values in sorted(roles.items())
        ),
        file=sys.stderr,
        flush=True,
    )
    return memory, roles


def measure(args: argparse.Namespace, root: Path, env: dict[str, str]) -> list[Figure]:
    whole: list[Memory] = []
    bigger: list[Memory] = []
    roles: dict[str, list[dict[str, list[float]]]] = {"example": [], "plus one": []}
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}/{args.rounds} ...", file=sys.stderr, flush=True)
        for extra, name, kept in ((0, "", whole), (1, "-plus1", bigger)):
            memory, by_role = mesh_memory(
                root / f"round{round_number}{name}", env, extra=extra, settle=args.settle
            )
            kept.append(memory)
            roles["plus one" if extra else "example"].append(by_role)
    processes = {"example": [m.processes for m in whole], "plus one": [m.processes for m in bigger]}
    return [
        Figure(
            name="example shop's mesh, PSS",
            unit="MB",
            target=TARGET_MESH_PSS_MB,
            samples=tuple(m.pss_bytes / MB for m in whole),
            details={"processes": processes, "pss_mb_by_role": roles},
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
