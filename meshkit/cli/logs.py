"""``meshkit logs [SERVICE ...] [-f] [--since 5m] [--access]``: the mesh's log files, interleaved.

Reads ``.meshkit/logs/`` of the current directory, so it works for a running
mesh and for one that has stopped.  Every file's lines (rotated copies first,
oldest first) are merged by time and printed like ``docker compose logs``:
``catalog-v1-0 | ...`` for an app, ``catalog-v1-0.proxy | ...`` for its
sidecar.  A line's time is the UTC stamp it starts with (access-log lines
have one); a line without one takes the time of the line before it in its
file, so each file keeps its order.  ``SERVICE`` picks the instances of a
service (``catalog``), or one instance (``catalog-v1-0``).  Access-log lines
are left out unless ``--access``.  ``--since 5m`` (``s``, ``m``, ``h``)
leaves out older lines; a file with no stamps at all counts as written at its
modification time.  ``-f`` keeps printing new lines until Ctrl-C (exit 130).
"""

from __future__ import annotations

import argparse
import heapq
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from meshkit.runtime.logs import FollowedFile, colour_for, is_access_line, use_colour

LOG_DIRECTORY = Path(".meshkit") / "logs"
FOLLOW_INTERVAL = 0.2
EXIT_INTERRUPTED = 130
_STAMP = re.compile(r'^(?:\{"time":")?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z')
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smh])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="print the mesh's log files interleaved by time (-f: follow them)",
        description="Print the logs of the mesh of this directory, running or stopped.",
    )
    parser.add_argument("services", nargs="*", metavar="SERVICE", help="only these services")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("--since", default=None, metavar="DURATION", help="only lines this recent")
    parser.add_argument("--access", action="store_true", help="include access-log lines")


def parse_since(text: str) -> float:
    """``5m`` as seconds; ``ValueError`` names what is accepted."""
    match = _SINCE.match(text.strip())
    if match is None:
        raise ValueError(f"--since {text!r}: expected a number and s, m or h (5m, 90s, 2h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def line_time(line: str) -> float | None:
    """The UTC stamp a line starts with, as a Unix time."""
    match = _STAMP.match(line)
    if match is None:
        return None
    stamp = datetime.fromisoformat(match.group(1) + "+00:00")
    return stamp.timestamp()


def display_name(path: Path) -> str:
    """``catalog-v1-0.proxy`` for ``catalog-v1-0.proxy.log`` (and its rotated copies)."""
    name = path.name
    return name[: name.index(".log")]


def wanted(name: str, services: list[str]) -> bool:
    instance = name.removesuffix(".proxy")
    return not services or any(instance == s or instance.startswith(s + "-") for s in services)


def log_files(directory: Path, services: list[str]) -> dict[str, list[Path]]:
    """Each wanted stream's files, oldest rotated copy first, the live file last."""
    streams: dict[str, list[Path]] = {}
    for live in sorted(directory.glob("*.log")):
        name = display_name(live)
        if not wanted(name, services):
            continue
        rotated = sorted(
            directory.glob(f"{live.name}.[0-9]*"),
            key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
            reverse=True,
        )
        streams[name] = [*rotated, live]
    return streams


def timed_lines(paths: list[Path], *, access: bool) -> Iterator[tuple[float, str]]:
    """The lines of one stream with their own or inherited times."""
    fallback = max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)
    lines = [
        line
        for path in paths
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
    ]
    if not any(line_time(line) is not None for line in lines):
        yield from ((fallback, line) for line in lines if access or not is_access_line(line))
        return
    current = float("-inf")
    for line in lines:
        current = line_time(line) or current
        if access or not is_access_line(line):
            yield current, line


class Printer:
    def __init__(self, names: list[str]) -> None:
        self.width = max((len(name) for name in names), default=0)
        self.coloured = use_colour(sys.stdout)

    def show(self, name: str, line: str) -> None:
        prefix = f"{name:<{self.width}} |"
        if self.coloured:
            prefix = f"\x1b[{colour_for(name.removesuffix('.proxy'))}m{prefix}\x1b[0m"
        sys.stdout.write(f"{prefix} {line}\n")


def _stream(name: str, paths: list[Path], *, access: bool) -> Iterator[tuple[float, int, str, str]]:
    for order, (when, line) in enumerate(timed_lines(paths, access=access)):
        yield when, order, name, line


def print_history(streams: dict[str, list[Path]], *, access: bool, since: float | None) -> None:
    printer = Printer(list(streams))
    merged = heapq.merge(*(_stream(name, paths, access=access) for name, paths in streams.items()))
    for when, _order, name, line in merged:
        if since is None or when >= since:
            printer.show(name, line)
    sys.stdout.flush()


def follow(streams: dict[str, list[Path]], *, access: bool, interval: float) -> None:
    printer = Printer(list(streams))
    followed = {name: FollowedFile(paths[-1], colour_key=name) for name, paths in streams.items()}
    while True:
        for name, file in followed.items():
            for line in file.new_lines():
                if access or not is_access_line(line):
                    printer.show(name, line)
        sys.stdout.flush()
        time.sleep(interval)


def run(args: argparse.Namespace) -> int:
    try:
        since = None if args.since is None else time.time() - parse_since(args.since)
    except ValueError as error:
        print(f"meshkit logs: {error}", file=sys.stderr)
        return 2
    if not LOG_DIRECTORY.is_dir():
        print(f"meshkit logs: no logs in {Path.cwd() / LOG_DIRECTORY}", file=sys.stderr)
        return 1
    streams = log_files(LOG_DIRECTORY, list(args.services))
    if args.services and not streams:
        print(f"meshkit logs: no log files for {', '.join(args.services)}", file=sys.stderr)
        return 1
    try:
        print_history(streams, access=args.access, since=since)
        if args.follow:
            follow(streams, access=args.access, interval=FOLLOW_INTERVAL)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0
