"""``meshkit reload``: re-read the Meshfile of the running mesh now and apply it.

The same as saving the Meshfile while ``meshkit up`` watches it (and the way
to reload under ``meshkit up --no-watch``): only what changed is applied;
a Meshfile with problems changes nothing and its problems are printed.
Exit status 0 when applied without problems, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from meshkit.cli.control import ask

DEFAULT_TIMEOUT = 300.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reload",
        help="re-read the Meshfile of the running mesh and apply what changed",
        description="Re-read the Meshfile now; apply only what changed; print the outcome.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for a rolling restart to finish (default {DEFAULT_TIMEOUT:g})",
    )


def format_outcome(outcome: dict[str, Any]) -> str:
    if not outcome.get("applied"):
        return f"meshkit: reload refused, nothing changed: {outcome.get('error')}"
    line = f"meshkit: reload applied: {outcome.get('summary')}"
    duration = outcome.get("duration_ms")
    if duration is not None:
        line += f" ({float(duration):.0f} ms to the last sidecar's ACK)"
    if outcome.get("error"):
        line += f"\nmeshkit: with problems: {outcome.get('error')}"
    return line


def run(args: argparse.Namespace) -> int:
    outcome = ask("POST", "/v1/reload", command="meshkit reload", timeout=args.timeout)
    if outcome is None:
        return 1
    message = format_outcome(outcome)
    ok = bool(outcome.get("applied")) and not outcome.get("error")
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
