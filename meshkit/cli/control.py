"""How every CLI command talks to the mesh running in this directory.

``ask`` makes one control API call (``meshkit.api.control``) and either
returns the answer or prints, on stderr, why there is none: no mesh runs
here, no answer in time, or the control plane refused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshkit.api.control import (
    ControlPlaneError,
    ControlPlaneTimeout,
    error_text,
    request_json_blocking,
)

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


def run_change(
    command: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    describe: Callable[[dict[str, Any]], str],
    *,
    timeout: float,
) -> int:
    """Send one runtime change (or listing) and print ``describe(answer)``.

    Exit status 0 once every sidecar applied the change (a listing always), 1
    when no mesh runs, the control plane refused, or some sidecar lags (named).
    """
    answer = ask(method, path, body, command=command, timeout=timeout)
    if answer is None:
        return 1
    if method == "GET" or answer.get("synced"):
        print(describe(answer))
        return 0
    print(f"{command}: {describe(answer)}", file=sys.stderr)
    return 1
