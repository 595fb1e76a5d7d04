"""``meshkit down``: ask the mesh running in this directory to stop, and wait for it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from meshkit.cli.status import CONTROL_SOCKET, NoMeshRunning, call_control
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


async def _down(paths: StatePaths, wait_seconds: float) -> int:
    pid = paths.running_pid()
    status, body = await call_control(CONTROL_SOCKET, "POST", "/v1/down")
    if status != 202:
        print(f"meshkit: the control plane refused to stop ({status}): {body}", file=sys.stderr)
        return 1
    with trio.move_on_after(wait_seconds):
        while pid is not None and paths.running_pid() == pid:
            await trio.sleep(0.1)
        return 0
    print(
        f"meshkit: the mesh (pid {pid}) is still running after {wait_seconds:g}s",
        file=sys.stderr,
    )
    return 1


def run(args: argparse.Namespace) -> int:
    paths = StatePaths(state_dir=STATE_DIRECTORY)
    try:
        code = trio.run(_down, paths, args.grace + 5.0)
    except NoMeshRunning as exc:
        print(exc, file=sys.stderr)
        return 1
    if code == 0:
        print("meshkit: mesh stopped")
    return code
