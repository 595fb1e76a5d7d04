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
from collections.abc import Sequence
from typing import Any

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


def build_parser(arguments: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or, when ``arguments`` name one, of that one only:
    each subcommand's module is imported to add its parser, and ``meshkit up`` need not
    hold ``meshkit export``'s modules for its life."""
    parser = argparse.ArgumentParser(
        prog="meshkit",
        description="A service mesh for a laptop and a test suite.",
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the version")
    parser.add_argument(
        "-C",
        "--dir",
        metavar="DIR",
        dest="directory",
        help="run as if meshkit was started in DIR (the directory of the mesh or Meshfile)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    named = None if arguments is None else _command_of(arguments)
    for name in SUBCOMMANDS if named is None else (named,):
        module = importlib.import_module(f"meshkit.cli.{name}")
        module.add_parser(sub)
    return parser


def _command_of(arguments: Sequence[str]) -> str | None:
    """The subcommand ``arguments`` name after the global options, or None (none, ``--help``,
    ``--version``, an unknown one: the parser then needs them all, to list or refuse)."""
    tokens = iter(arguments)
    for token in tokens:
        if token in ("-C", "--dir"):
            next(tokens, None)
        elif not token.startswith(("-C", "--dir=")):
            return token if token in SUBCOMMANDS else None
    return None


class _VersionAction(argparse.Action):
    """``--version``: looked up in the installed metadata only when asked for (importing
    ``importlib.metadata`` costs every command ~30 ms and ``meshkit up`` ~5 MB)."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("meshkit")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        sys.stdout.write(f"meshkit {found}\n")
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    early.start_for(arguments)
    try:
        return _run(arguments)
    finally:
        early.abandon()


def _run(arguments: list[str]) -> int:
    parser = build_parser(arguments)
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
