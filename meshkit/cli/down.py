"""``meshkit down``: ask the mesh running in this directory to stop, and wait for it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from meshkit.cli.control import ask
from meshkit.runtime.mesh import StatePaths

STATE_DIRECTORY = Path(".meshkit")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "down",
        help="stop the mesh running in this directory",
        description="Ask the running mesh to stop gracefully and wait until it has exited.",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the grace period the mesh was started with; waits up to grace + 5 s (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    paths = StatePaths(state_dir=STATE_DIRECTORY)
    pid = paths.running_pid()
    if ask("POST", "/v1/down", command="meshkit down", accept=202) is None:
        return 1
    wait_seconds = args.grace + 5.0
    deadline = time.monotonic() + wait_seconds
    while pid is not None and paths.running_pid() == pid:
        if time.monotonic() >= deadline:
            print(
                f"meshkit: the mesh (pid {pid}) is still running after {wait_seconds:g}s",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)
    print("meshkit: mesh stopped")
    return 0
