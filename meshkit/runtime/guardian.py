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
done.  It uses only the standard library, to start fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import BinaryIO

from meshkit.runtime import lineage

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


def guard(source: BinaryIO) -> list[int]:
    """Read registrations until EOF, then kill what is left; return those groups."""
    groups: set[int] = set()
    for line in source:
        parse_line(line, groups)
    return kill_groups(groups)


def sweep(prefix: str) -> set[int]:
    """SIGKILL every process tagged ``prefix*`` until none is left (a few rounds at most)."""
    killed: set[int] = set()
    for _ in range(SWEEPS):
        found = lineage.tagged(prefix)
        if not found:
            break
        lineage.signal_all(found, signal.SIGKILL)
        killed |= found
        time.sleep(0.02)
    return killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshkit.runtime.guardian")
    parser.add_argument("--owners", help="the owner-tag prefix of the run to clear away")
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    killed = guard(sys.stdin.buffer)
    strays = set() if not args.owners else sweep(args.owners)
    if killed or strays:
        groups = ", ".join(str(pgid) for pgid in killed) or "none"
        sys.stderr.write(
            f"meshkit guardian: control plane gone; killed process groups {groups} "
            f"and {len(strays)} processes that had left them\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
