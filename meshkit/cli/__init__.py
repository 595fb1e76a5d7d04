"""The ``meshkit`` command: ``main(argv) -> int``, one module per subcommand.

Each subcommand module has ``add_parser(subparsers)`` and ``run(args) -> int``.
``-C DIR`` (``--dir DIR``) runs the command in DIR, as ``git -C`` and
``make -C`` do: the control commands then talk to the mesh started there.
Exit status 130 after Ctrl-C; output to a closed pipe (``meshkit status |
head``) ends the command quietly with status 141, as a shell's SIGPIPE would.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from meshkit.cli import early

EXIT_CLOSED_PIPE = 141

SUBCOMMANDS = (
    "up",
    "down",
    "status",
    "reload",
    "restart",
    "fault",
    "limit",
    "routes",
    "check",
    "spec",
    "ca",
    "export",
    "trace",
    "dashboard",
    "logs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshkit",
        description="A service mesh for a laptop and a test suite.",
    )
    parser.add_argument("--version", action="version", version=f"meshkit {_version()}")
    parser.add_argument(
        "-C",
        "--dir",
        metavar="DIR",
        dest="directory",
        help="run as if meshkit was started in DIR (the directory of the mesh or Meshfile)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"meshkit.cli.{name}")
        module.add_parser(sub)
    return parser


def _version() -> str:
    try:
        return version("meshkit")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    early.start_for(arguments)
    try:
        return _run(arguments)
    finally:
        early.abandon()


def _run(arguments: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.directory is not None:
        try:
            os.chdir(args.directory)
        except OSError as error:
            parser.error(f"-C {args.directory}: {error.strerror or error}")
    module = importlib.import_module(f"meshkit.cli.{args.command}")
    try:
        result: int = module.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # Whoever read our output has gone: say nothing more, and let the
        # interpreter's last flush write into the void, not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_CLOSED_PIPE
    return result


if __name__ == "__main__":
    sys.exit(main())
