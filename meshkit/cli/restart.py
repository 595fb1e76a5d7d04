"""``meshkit restart SERVICE``: replace every instance of a service, one at a time.

The same rolling restart a source edit under the service's ``watch`` paths
causes: each new instance is healthy before the old one drains, so traffic
keeps flowing.  Returns when the restart is done; exit status 0 when it went
without problems, 1 otherwise (the problems are printed).
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote

import trio

from meshkit.cli.reload import DEFAULT_TIMEOUT
from meshkit.cli.status import CONTROL_SOCKET, NoMeshRunning, no_mesh_message
from meshkit.proxy.control import ControlPlaneError, request_json


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "restart",
        help="restart every instance of a service, one at a time, without dropping traffic",
        description="Replace the instances of SERVICE one by one; wait until it is done.",
    )
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the restart to finish (default {DEFAULT_TIMEOUT:g})",
    )


async def request_restart(service: str, timeout: float) -> tuple[int, object]:
    if not CONTROL_SOCKET.exists():
        raise NoMeshRunning(no_mesh_message(CONTROL_SOCKET))
    try:
        with trio.fail_after(timeout):
            return await request_json(
                CONTROL_SOCKET, "POST", f"/v1/services/{quote(service, safe='')}/restart"
            )
    except ControlPlaneError as exc:
        raise NoMeshRunning(f"{no_mesh_message(CONTROL_SOCKET)} ({exc})") from None


def run(args: argparse.Namespace) -> int:
    try:
        status, outcome = trio.run(request_restart, args.service, args.timeout)
    except NoMeshRunning as exc:
        print(exc, file=sys.stderr)
        return 1
    except trio.TooSlowError:
        print(f"meshkit restart: not done within {args.timeout:g}s", file=sys.stderr)
        return 1
    if status != 200 or not isinstance(outcome, dict):
        error = outcome.get("error") if isinstance(outcome, dict) else outcome
        print(f"meshkit restart: {error} (control plane answered {status})", file=sys.stderr)
        return 1
    if not outcome.get("applied"):
        print(f"meshkit restart: nothing restarted: {outcome.get('error')}", file=sys.stderr)
        return 1
    if outcome.get("error"):
        print(
            f"meshkit restart: {args.service} restarted with problems: {outcome.get('error')}",
            file=sys.stderr,
        )
        return 1
    duration = outcome.get("duration_ms")
    took = "" if duration is None else f" in {float(str(duration)) / 1000:.1f}s"
    print(f"meshkit: restarted every instance of {args.service}{took}")
    return 0
