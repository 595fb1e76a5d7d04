"""How every CLI command talks to the mesh running in this directory.

``ask`` makes one control API call (``meshkit.api.control``) and either
returns the answer or prints, on stderr, why there is none: no mesh runs
here, no answer in time, or the control plane refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from meshkit.api.control import (
    ControlPlaneError,
    ControlPlaneTimeout,
    error_text,
    request_json_blocking,
)
from meshkit.dsl.durations import DURATION_HINT, DurationError, parse_duration

CONTROL_SOCKET = Path(".meshkit") / "run" / "control.sock"
REQUEST_TIMEOUT = 5.0


def no_mesh_message(socket_path: Path) -> str:
    return (
        f"meshkit: no mesh is running in {Path.cwd()} (nothing answers on {socket_path}); "
        "start one with 'meshkit up'"
    )


def ask(
    method: str,
    path: str,
    body: Any = None,
    *,
    command: str = "meshkit",
    timeout: float = REQUEST_TIMEOUT,
    accept: int = 200,
) -> dict[str, Any] | None:
    """The control plane's JSON answer to one call, or None once stderr says why not.

    ``accept`` is the status that means success; ``command`` starts each message.
    """
    if not CONTROL_SOCKET.exists():
        print(no_mesh_message(CONTROL_SOCKET), file=sys.stderr)
        return None
    try:
        status, answer = request_json_blocking(CONTROL_SOCKET, method, path, body, timeout=timeout)
    except ControlPlaneTimeout as exc:
        print(
            f"{command}: the mesh in {Path.cwd()} is running but slow: {exc}; "
            "it may be overloaded or stopped (try again, or --timeout if the command has one)",
            file=sys.stderr,
        )
        return None
    except ControlPlaneError as exc:
        print(f"{no_mesh_message(CONTROL_SOCKET)} ({exc})", file=sys.stderr)
        return None
    if status != accept or not isinstance(answer, dict):
        print(
            f"{command}: {error_text(answer)} (control plane answered {status})",
            file=sys.stderr,
        )
        return None
    return answer


def lagging_note(answer: dict[str, Any]) -> str:
    """`` (not every sidecar has applied it yet: a-0, b-1)``, or "" once synced."""
    if answer.get("synced"):
        return ""
    if answer.get("lagging"):
        return f" (not every sidecar has applied it yet: {', '.join(answer['lagging'])})"
    return " (not every sidecar has applied it yet)"


CHANGE_TIMEOUT = 20.0
"""Seconds to wait for a runtime change: the control plane answers within ~5 s even if a sidecar lags."""

Plan = tuple[str, str, dict[str, Any] | None]
"""``(method, path, body)`` of one control API call."""


class UsageError(Exception):
    """Bad arguments; the message names the flag and what it accepts."""


def add_runtime_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    noun: str,
    default_duration: str,
) -> argparse.ArgumentParser:
    """The parser of ``meshkit fault``/``meshkit limit``: SERVICE, --duration, --clear, --list."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.add_argument("service", nargs="?", metavar="SERVICE", help="the destination service")
    parser.add_argument(
        "--duration",
        metavar="DURATION",
        help=f"how long the {noun} lasts (default {default_duration})",
    )
    parser.add_argument("--clear", action="store_true", help=f"remove the {noun}s on SERVICE")
    parser.add_argument("--list", action="store_true", help=f"show the {noun}s in force")
    return parser


def plan_change(
    args: argparse.Namespace, resource: str, body: Callable[[argparse.Namespace], dict[str, Any]]
) -> Plan:
    """The call ``add_runtime_parser``'s arguments ask for on ``/v1/<resource>``.

    A listing without SERVICE or with --list, a ``DELETE`` of SERVICE's
    ``resource`` with --clear, else a ``POST`` of ``body(args)``.
    """
    if args.list or args.service is None:
        if args.clear:
            raise UsageError(f"--clear needs the SERVICE whose {resource} to remove")
        return "GET", f"/v1/{resource}", None
    if args.clear:
        return "DELETE", f"/v1/{resource}?service={quote(args.service)}", None
    return "POST", f"/v1/{resource}", body(args)


def flag_duration(flag: str, value: str) -> float:
    """Seconds of a duration flag; ``--duration`` must be above 0, any other not negative."""
    try:
        seconds = parse_duration(value)
    except DurationError:
        raise UsageError(f"{flag} {value!r} is not a duration ({DURATION_HINT})") from None
    if seconds <= 0 and flag == "--duration":
        raise UsageError(f"--duration must be longer than 0 (got {value!r})")
    if seconds < 0:
        raise UsageError(f"{flag} must not be negative (got {value!r})")
    return seconds


def run_change(
    command: str,
    plan: Callable[[], Plan],
    describe: Callable[[str, dict[str, Any] | None, dict[str, Any]], str],
) -> int:
    """Send the runtime change (or listing) ``plan`` gives and print ``describe(...)`` of it.

    Exit status 0 once every sidecar applied the change (a listing always), 1
    when no mesh runs, the control plane refused, or some sidecar lags (named),
    2 when ``plan`` raised ``UsageError``.
    """
    try:
        method, path, body = plan()
    except UsageError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    answer = ask(method, path, body, command=command, timeout=CHANGE_TIMEOUT)
    if answer is None:
        return 1
    if method == "GET" or answer.get("synced"):
        print(describe(method, body, answer))
        return 0
    print(f"{command}: {describe(method, body, answer)}", file=sys.stderr)
    return 1
