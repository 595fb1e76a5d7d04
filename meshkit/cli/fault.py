"""``meshkit fault``: inject faults into the running mesh, list them, clear them.

* ``meshkit fault SERVICE --abort 503|unavailable [--delay 200ms] [--percent 50]
  [--path-prefix /items] [--header k=v ...] [--duration 30s]``: every request *to* SERVICE
  (from the gateway or another service) that matches is delayed and/or
  answered by the mesh with the abort (flag ``FI``; ``DI`` for a delay).
  The command returns once every sidecar applied it; when some did not
  within the control plane's wait, it names them and exits 1.  Faults expire by
  themselves (``--duration``, default 5 minutes).
* ``meshkit fault SERVICE --clear``: remove every fault on SERVICE.
* ``meshkit fault --list`` (or ``meshkit fault`` alone): the faults in force.

Exit status 0 on success, 1 when no mesh runs, the control plane refused, or
a sidecar did not apply the change in time (named on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from meshkit.api import GRPC_STATUS_NAMES
from meshkit.cli.control import (
    Plan,
    UsageError,
    add_runtime_parser,
    flag_duration,
    lagging_note,
    plan_change,
    run_change,
)
from meshkit.cli.status import describe_fault
from meshkit.dsl.durations import format_duration


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_runtime_parser(
        subparsers,
        "fault",
        help="inject, list or clear runtime faults (abort, delay) on a service",
        description=(
            "Make requests to SERVICE fail or slow down while the mesh runs. "
            "Without SERVICE (or with --list): show the faults in force."
        ),
        noun="fault",
        default_duration="5m",
    )
    parser.add_argument(
        "--abort",
        metavar="STATUS",
        help="answer with this HTTP status (503) or gRPC code name (unavailable)",
    )
    parser.add_argument("--delay", metavar="DURATION", help="delay requests (200ms, 1.5s)")
    parser.add_argument(
        "--percent",
        metavar="PERCENT",
        default="100",
        help="share of matching requests affected (default 100)",
    )
    parser.add_argument(
        "--path-prefix", metavar="PREFIX", help="only requests whose path starts so"
    )
    parser.add_argument(
        "--header",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="only requests carrying this header value (repeatable)",
    )


def _abort(value: str) -> int | str:
    if value.isdigit():
        status = int(value)
        if not 200 <= status <= 599:
            raise UsageError(f"--abort {value}: an HTTP status is from 200 to 599")
        return status
    if value.lower() in GRPC_STATUS_NAMES:
        return value.lower()
    raise UsageError(
        f"--abort {value!r} is neither an HTTP status (e.g. 503) nor a gRPC code name "
        f"({', '.join(GRPC_STATUS_NAMES)})"
    )


def _percent(value: str) -> float:
    try:
        percent = float(value.removesuffix("%"))
    except ValueError:
        percent = -1.0
    if not 0 < percent <= 100:
        raise UsageError(f"--percent {value!r}: give a number above 0 and at most 100")
    return percent


def _headers(values: list[str]) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    for item in values:
        name, separator, value = item.partition("=")
        if not separator or not name.strip():
            raise UsageError(f"--header {item!r}: write it as NAME=VALUE (x-canary=1)")
        headers[name.strip().lower()] = value
    return headers or None


def fault_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``POST /v1/faults`` body for ``meshkit fault SERVICE ...``; ``UsageError`` if bad."""
    if args.abort is None and args.delay is None:
        raise UsageError(
            f"say what to do to {args.service}: --abort 503 (or a gRPC code like unavailable) "
            "and/or --delay 200ms; --clear removes its faults"
        )
    prefix = args.path_prefix
    if prefix is not None and not prefix.startswith("/"):
        raise UsageError(f"--path-prefix {prefix!r}: a path prefix starts with '/' (/items)")
    return {
        "service": args.service,
        "abort": None if args.abort is None else _abort(args.abort),
        "delay": None if args.delay is None else flag_duration("--delay", args.delay),
        "percent": _percent(args.percent),
        "path_prefix": prefix,
        "headers": _headers(args.header),
        "duration": None if args.duration is None else flag_duration("--duration", args.duration),
    }


def plan_request(args: argparse.Namespace) -> Plan:
    """``(method, path, body)`` of the control API call the arguments ask for."""
    return plan_change(args, "faults", fault_body)


def format_answer(method: str, body: dict[str, Any] | None, answer: dict[str, Any]) -> str:
    now = time.time()
    if method == "GET":
        faults = answer.get("faults") or []
        if not faults:
            return "meshkit: no faults in force"
        return "\n".join(describe_fault(fault, now=now) for fault in faults)
    lagging = lagging_note(answer)
    if method == "DELETE":
        removed = answer.get("removed") or []
        if not removed:
            return "meshkit: there was no fault to clear"
        return f"meshkit: cleared {', '.join(removed)}{lagging}"
    assert body is not None
    left = float(answer.get("expires_at") or now) - now
    shown = {**body, "id": answer.get("id")}
    return (
        f"meshkit: fault {describe_fault(shown, now=now)}, for {format_duration(round(left))}"
        f"{lagging}; clear it with 'meshkit fault {body['service']} --clear'"
    )


def run(args: argparse.Namespace) -> int:
    return run_change("meshkit fault", lambda: plan_request(args), format_answer)
