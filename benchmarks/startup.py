"""How long a mesh takes to start: the example, a 30-instance mesh, the pytest fixture.

    python benchmarks/startup.py [--rounds 3] [--instances 30] [--modules 2]
                                 [--only example,large,fixture] [--bytecode]
                                 [--json FILE] [--keep]

- example: ``meshkit up -f meshfile.example.py --gateway-port 0 --no-watch`` in
  a temporary copy of the example, from the start of the command to all-ready
  (``/v1/status`` on the control socket, polled every 20 ms: ready, every
  instance healthy, every sidecar SYNCED); target <= 2 s;
- large: the same for a generated mesh of ``--instances`` tiny apps (two
  replicas per service); target <= 6 s for 30;
- fixture: an inner ``pytest`` run of ``--modules`` generated test modules that
  each ask for the ``mesh`` fixture of the example (``meshkit_scope =
  "module"``: one start and one stop per module), minus the same run of
  modules that do not, divided by the number of modules; target <= 2.5 s.

Each mesh is stopped (SIGINT, then SIGKILL of what is left) before the next
starts; medians over the rounds.  Not a test; CI does not run it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hopbench.procs import BenchError, Servers, log_tail
from meshbench.figures import Figure, common_parser, run_command
from meshbench.meshes import copy_example, example_instances, write_tiny_mesh
from meshbench.running import time_to_ready

PARTS = ("example", "large", "fixture")
TARGET_EXAMPLE_S = 2.0
TARGET_LARGE_S = 6.0
TARGET_FIXTURE_S = 2.5
INNER_PYTEST_TIMEOUT_S = 600.0

PYTEST_INI = """\
[pytest]
meshkit_file = meshfile.example.py
meshkit_scope = module
"""

WITH_MESH = '''\
"""Written by benchmarks/startup.py: one mesh started and stopped for this module."""


def test_the_mesh_is_ready(mesh):
    assert mesh.status()["ready"]
'''

WITHOUT_MESH = '''\
"""Written by benchmarks/startup.py: the same module without a mesh (the baseline)."""


def test_nothing():
    assert True
'''


def time_up(meshfile: Path, env: dict[str, str], instances: int) -> float:
    with Servers() as servers:
        seconds, _, _ = time_to_ready(servers, meshfile, env=env, expected_instances=instances)
    return seconds


def write_fixture_suite(directory: Path, *, modules: int, with_mesh: bool) -> None:
    copy_example(directory)
    (directory / "pytest.ini").write_text(PYTEST_INI)
    for index in range(modules):
        (directory / f"test_module{index}.py").write_text(WITH_MESH if with_mesh else WITHOUT_MESH)


def time_pytest(directory: Path, env: dict[str, str]) -> float:
    """Wall time of one inner pytest run in ``directory``; it must pass."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    with Servers() as servers:
        started = time.monotonic()
        run = servers.start(
            name="inner pytest", argv=argv, cwd=directory,
            log_path=directory / "pytest.log", env=env,
        )
        try:
            code = run.process.wait(timeout=INNER_PYTEST_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"the inner pytest in {directory} ran over its time") from error
        elapsed = time.monotonic() - started
    if code != 0:
        raise BenchError(
            f"the inner pytest in {directory} failed ({code}):\n{log_tail(run.log_path, 30)}"
        )
    return elapsed


def fixture_cost(root: Path, env: dict[str, str], modules: int) -> tuple[float, float, float]:
    """(seconds per module, the mesh run's seconds, the baseline's seconds)."""
    with_mesh, baseline = root / "with-mesh", root / "baseline"
    write_fixture_suite(with_mesh, modules=modules, with_mesh=True)
    write_fixture_suite(baseline, modules=modules, with_mesh=False)
    base = time_pytest(baseline, env)
    meshed = time_pytest(with_mesh, env)
    return (meshed - base) / modules, meshed, base


def measure(args: argparse.Namespace, root: Path, env: dict[str, str]) -> list[Figure]:
    samples: dict[str, list[float]] = {part: [] for part in args.parts}
    runs: list[dict[str, float]] = []
    for round_number in range(1, args.rounds + 1):
        for part in args.parts:
            print(f"round {round_number}/{args.rounds}: {part} ...", file=sys.stderr, flush=True)
            workdir = root / f"round{round_number}-{part}"
            if part == "example":
                meshfile = copy_example(workdir)
                samples[part].append(time_up(meshfile, env, example_instances()))
            elif part == "large":
                services = (args.instances + 1) // 2
                meshfile = write_tiny_mesh(workdir, services=services, replicas=2)
                samples[part].append(time_up(meshfile, env, services * 2))
            else:
                per_module, meshed, base = fixture_cost(workdir, env, args.modules)
                samples[part].append(per_module)
                runs.append({"with_mesh_s": meshed, "baseline_s": base})
    names = {
        "example": ("meshkit up of the example to all-ready", TARGET_EXAMPLE_S, {}),
        "large": (
            f"meshkit up of {(args.instances + 1) // 2 * 2} instances to all-ready",
            TARGET_LARGE_S,
            {},
        ),
        "fixture": (
            "pytest fixture start + stop per module",
            TARGET_FIXTURE_S,
            {"modules": args.modules, "runs": runs},
        ),
    }
    return [
        Figure(
            name=names[part][0],
            unit="s",
            target=names[part][1],
            samples=tuple(samples[part]),
            details=names[part][2],
        )
        for part in args.parts
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_parser(
        "python benchmarks/startup.py", "Start-up of a mesh, to all-ready.", default_rounds=3
    )
    parser.add_argument("--instances", type=int, default=30, help="the large mesh (default 30)")
    parser.add_argument(
        "--modules", type=int, default=2, help="test modules of the fixture run (default 2)"
    )
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}"
    )
    args = parser.parse_args(argv)
    args.parts = [part for part in PARTS if part in args.only.split(",")]
    if not args.parts or args.instances < 2 or args.modules < 1:
        parser.error(f"--only takes a subset of {','.join(PARTS)}; --instances >= 2, --modules >= 1")
    return run_command("startup", args, measure)


if __name__ == "__main__":
    sys.exit(main())
