"""``meshkit spec [-f FILE]``: print the Meshfile's validated spec as JSON.

The JSON is ``meshkit.dsl.convert.spec_to_json``: what ``meshkit up`` would
run, with every default filled in and every path absolute.  A Meshfile with
problems prints them on stderr and exits 1, as ``meshkit check`` does.
"""

from __future__ import annotations

import argparse

from meshkit.cli.check import add_meshfile_arguments, evaluate_for_command
from meshkit.dsl.convert import spec_to_json


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "spec",
        help="print the Meshfile's validated spec as JSON",
        description="Evaluate the Meshfile and print its spec as JSON.",
    )
    add_meshfile_arguments(parser)


def run(args: argparse.Namespace) -> int:
    evaluated = evaluate_for_command(args)
    if evaluated is None:
        return 1
    _, spec = evaluated
    print(spec_to_json(spec))
    return 0
