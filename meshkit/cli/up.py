"""``meshkit up [-f FILE] [SERVICE ...] [--grace SECONDS]``: run the mesh in the foreground.

Evaluates the Meshfile (its problems are printed, exit 1), then runs the mesh
until Ctrl-C, SIGTERM or ``meshkit down``.  State lives in ``.meshkit/`` of
the current directory; apps run in the Meshfile's directory unless their
service says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from meshkit.dsl.evaluation import evaluate, find_meshfile
from meshkit.runtime.mesh import EXIT_FAILED, EXIT_SIGINT, UpOptions, run_mesh
from meshkit.runtime.plan import PlanError, restrict_spec

STATE_DIRECTORY = ".meshkit"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start every service of the Meshfile behind its sidecar, in the foreground",
        description="Start the mesh of a Meshfile and run it until Ctrl-C or 'meshkit down'.",
    )
    parser.add_argument("-f", "--file", default=None, help="the Meshfile (default: ./Meshfile.py)")
    parser.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help="start only these services (and the services they depend on)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a process may take to exit after SIGTERM before SIGKILL (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        meshfile = Path(find_meshfile(args.file))
    except (OSError, ValueError) as exc:
        print(f"meshkit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    result = evaluate(meshfile)
    if not result.ok or result.spec is None:
        for problem in result.problems:
            print(problem, file=sys.stderr)
        print(f"meshkit: {meshfile} has problems; nothing was started", file=sys.stderr)
        return EXIT_FAILED
    try:
        spec = restrict_spec(result.spec, tuple(args.services))
    except PlanError as exc:
        print(f"meshkit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    options = UpOptions(
        state_dir=Path.cwd() / STATE_DIRECTORY,
        base_dir=meshfile.resolve().parent,
        meshfile=str(meshfile),
        grace=args.grace,
    )
    try:
        return trio.run(run_mesh, spec, options)
    except KeyboardInterrupt:
        return EXIT_SIGINT
