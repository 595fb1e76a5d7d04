"""The orphan guard: ``python -m meshkit.runtime.guardian``.

The control plane starts this process in its own session with a pipe as its
stdin and writes one line per process group it owns: ``+<pgid>`` when it
creates one, ``-<pgid>`` when that group is gone.  When the pipe reaches end
of file (the control plane exited, even by SIGKILL), the guardian sends
SIGKILL to every group still registered, then to every process whose owner
tag starts with the run's prefix (``--owners``: the descendants that left
their group, such as daemons; ``meshkit.runtime.lineage``), and exits.

It ignores SIGINT, SIGTERM and SIGHUP so that a terminal's Ctrl-C, which
reaches the whole foreground group, cannot take it down before its work is
done.  It lives as long as the mesh, so it holds little: started as a
script with ``-S -P`` (``meshkit.runtime.process``: no site, no package
``__init__``, no ``runpy``), it imports only ``os``, ``signal``, ``sys`` and
``time`` until the pipe ends, and ``meshkit.runtime.lineage``, for the sweep,
after that (about 4 MB PSS instead of 7).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable

SWEEPS = 20


def parse_line(line: bytes, groups: set[int]) -> None:
    """Apply one ``+pgid`` / ``-pgid`` line to ``groups``; ignore anything else."""
    text = line.strip()
    if len(text) < 2 or text[:1] not in (b"+", b"-") or not text[1:].isdigit():
        return
    pgid = int(text[1:])
    if pgid <= 1:
        return
    if text[:1] == b"+":
        groups.add(pgid)
    else:
        groups.discard(pgid)


def kill_groups(groups: set[int]) -> list[int]:
    """SIGKILL every group; return the ones that still existed."""
    killed = []
    for pgid in sorted(groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed.append(pgid)
    return killed


def guard(source: Iterable[bytes]) -> list[int]:
    """Read registrations until EOF, then kill what is left; return those groups."""
    groups: set[int] = set()
    for line in source:
        parse_line(line, groups)
    return kill_groups(groups)


def sweep(prefix: str) -> set[int]:
    """SIGKILL every process tagged ``prefix*`` until none is left (a few rounds at most)."""
    from meshkit.runtime import lineage  # here: not held for the mesh's whole life

    killed: set[int] = set()
    for _ in range(SWEEPS):
        found = lineage.tagged(prefix)
        if not found:
            break
        lineage.signal_all(found, signal.SIGKILL)
        killed |= found
        time.sleep(0.02)
    return killed


USAGE = "usage: python -m meshkit.runtime.guardian [--owners PREFIX]\n"


def owners_argument(argv: list[str]) -> str | None:
    """``--owners PREFIX`` (the owner-tag prefix of the run to clear away), or None if absent;
    ValueError for anything else."""
    if not argv:
        return None
    if len(argv) == 2 and argv[0] == "--owners":
        return argv[1]
    if len(argv) == 1 and argv[0].startswith("--owners="):
        return argv[0].partition("=")[2]
    raise ValueError(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        owners = owners_argument(sys.argv[1:] if argv is None else argv)
    except ValueError:
        sys.stderr.write(USAGE)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    killed = guard(sys.stdin.buffer)
    strays = set() if not owners else sweep(owners)
    if killed or strays:
        groups = ", ".join(str(pgid) for pgid in killed) or "none"
        sys.stderr.write(
            f"meshkit guardian: control plane gone; killed process groups {groups} "
            f"and {len(strays)} processes that had left them\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
