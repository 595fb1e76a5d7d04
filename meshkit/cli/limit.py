"""``meshkit limit``: tune the local rate limits of the running mesh, list them, clear them.

* ``meshkit limit SERVICE RATE [--burst N] [--route PREFIX] [--per caller]
  [--duration 30m]``: every instance of SERVICE admits at most RATE requests
  (``100/s``, ``5/m``), ``--burst`` at once (the rate's count by default), on
  the requests whose path starts with PREFIX (all of them by default), per
  caller with ``--per caller``.  It replaces a Meshfile limit on the same
  requests until it expires (``--duration``, default 1 hour) or is cleared.
  The command returns once every sidecar applied it; when some did not within
  the control plane's wait, it names them and exits 1.
* ``meshkit limit SERVICE --clear``: remove the runtime limits on SERVICE (the
  Meshfile's limits apply again).
* ``meshkit limit --list`` (or ``meshkit limit`` alone): the limits in force.

The exit statuses are ``meshkit fault``'s (``meshkit.cli.control.run_change``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from meshkit.cli.control import (
    Plan,
    UsageError,
    add_runtime_parser,
    flag_duration,
    lagging_note,
    plan_change,
    run_change,
)
from meshkit.cli.status import format_age
from meshkit.dsl.rates import RateError, parse_rate


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_runtime_parser(
        subparsers,
        "limit",
        help="set, list or clear local rate limits on a service at runtime",
        description=(
            "Limit the requests each instance of SERVICE admits (429 RL over it). "
            "Without SERVICE (or with --list): show the limits in force."
        ),
        noun="limit",
        default_duration="1h",
    )
    parser.add_argument("rate", nargs="?", metavar="RATE", help="requests per period: 100/s, 5/m")
    parser.add_argument(
        "--burst", metavar="N", type=int, help="bucket size (default: RATE's count)"
    )
    parser.add_argument("--route", metavar="PREFIX", help="only requests whose path starts so")
    parser.add_argument(
        "--per", choices=("service", "caller"), default="service", help="one bucket per caller"
    )


def limit_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``POST /v1/limits`` body for ``meshkit limit SERVICE RATE ...``; ``UsageError`` if bad."""
    if args.rate is None:
        raise UsageError(
            f"say how many requests {args.service} admits: a RATE like 100/s or 5/m; "
            "--clear removes its runtime limits"
        )
    try:
        parse_rate(args.rate)
    except RateError as error:
        raise UsageError(f"RATE {error}") from None
    if args.burst is not None and args.burst < 1:
        raise UsageError(f"--burst must be at least 1 (got {args.burst})")
    if args.route is not None and not args.route.startswith("/"):
        raise UsageError(f"--route {args.route!r}: a path prefix starts with '/' (/items)")
    return {
        "service": args.service,
        "rate": args.rate,
        "burst": args.burst,
        "route": args.route,
        "per": args.per,
        "duration": None if args.duration is None else flag_duration("--duration", args.duration),
    }


def plan_request(args: argparse.Namespace) -> Plan:
    """``(method, path, body)`` of the control API call the arguments ask for."""
    return plan_change(args, "limits", limit_body)


def describe_limit(limit: dict[str, Any], *, now: float) -> str:
    """One limit of ``GET /v1/limits``, for people."""
    rate = float(limit.get("rate") or 0)
    shown = f"{rate:.4g}/s" if rate >= 1 else f"{rate * 60:.4g}/m"
    line = f"{limit.get('service')} {shown} burst {limit.get('burst')}"
    if limit.get("per") == "caller":
        line += " per caller"
    if limit.get("route"):
        line += f" on {limit['route']}*"
    if limit.get("declared_at"):
        line += f" ({limit['declared_at']})"
    if limit.get("id"):
        line = f"{limit['id']}: {line}"
    if limit.get("expires_at") is not None:
        line += f", {format_age(float(limit['expires_at']) - now)} left"
    return line


def format_answer(method: str, body: dict[str, Any] | None, answer: dict[str, Any]) -> str:
    now = time.time()
    if method == "GET":
        lines = [describe_limit(limit, now=now) for limit in answer.get("in_force") or []]
        return "\n".join(lines) or "meshkit: no rate limits in force"
    if method == "DELETE":
        removed = answer.get("removed") or []
        if not removed:
            return "meshkit: there was no runtime limit to clear"
        return f"meshkit: cleared {', '.join(removed)}{lagging_note(answer)}"
    assert body is not None
    return (
        f"meshkit: limit {answer.get('id')} on {body['service']}: {body['rate']}"
        f"{lagging_note(answer)}; clear it with 'meshkit limit {body['service']} --clear'"
    )


def run(args: argparse.Namespace) -> int:
    return run_change("meshkit limit", lambda: plan_request(args), format_answer)
