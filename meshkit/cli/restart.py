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

from meshkit.cli.control import ask
from meshkit.cli.reload import DEFAULT_TIMEOUT


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


def run(args: argparse.Namespace) -> int:
    path = f"/v1/services/{quote(args.service, safe='')}/restart"
    outcome = ask("POST", path, command="meshkit restart", timeout=args.timeout)
    if outcome is None:
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
