"""The ``meshkit`` command: ``main(argv) -> int``, one module per subcommand.

Each subcommand module has ``add_parser(subparsers)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = (
    "up",
    "down",
    "status",
    "reload",
    "restart",
    "fault",
    "routes",
    "check",
    "spec",
    "ca",
    "export",
    "trace",
    "dashboard",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshkit",
        description="A service mesh for a laptop and a test suite.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"meshkit.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(f"meshkit.cli.{args.command}")
    result: int = module.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
