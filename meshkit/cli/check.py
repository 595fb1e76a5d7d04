"""``meshkit check [-f FILE]``: evaluate and validate a Meshfile, start nothing.

Exit 0 and ``FILE: ok (N services, M instances)`` when it is sound; exit 1 and
every problem on stderr (``FILE:LINE: message``) when it is not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeAlias

from meshkit.dsl import MeshfileNotFound, MeshSpec, evaluate, find_meshfile
from meshkit.dsl.evaluate.evaluation import DEFAULT_TIMEOUT

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_meshfile_arguments(parser: argparse.ArgumentParser) -> None:
    """``-f FILE`` and ``--timeout``, shared by the commands that read a Meshfile."""
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        default=None,
        help="the Meshfile (default: Meshfile.py or meshfile.py in the current directory)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up evaluating the Meshfile after this long (default: {DEFAULT_TIMEOUT:g})",
    )


def evaluate_for_command(args: argparse.Namespace) -> tuple[str, MeshSpec] | None:
    """Find and evaluate the Meshfile of ``args``; report to stderr and return None on failure."""
    try:
        meshfile = find_meshfile(args.file)
    except MeshfileNotFound as error:
        print(f"meshkit: {error}", file=sys.stderr)
        return None
    result = evaluate(meshfile, timeout=args.timeout)
    if result.output:
        sys.stderr.write(result.output if result.output.endswith("\n") else result.output + "\n")
    if result.spec is None or result.problems:
        for problem in result.problems:
            print(problem, file=sys.stderr)
        return None
    return str(meshfile), result.spec


def meshfile_command(
    name: str, *, summary: str, description: str, report: Callable[[str, MeshSpec], str]
) -> tuple[Callable[[Subparsers], None], Callable[[argparse.Namespace], int]]:
    """``(add_parser, run)`` of a command that evaluates the Meshfile and prints ``report``."""

    def add_parser(subparsers: Subparsers) -> None:
        parser = subparsers.add_parser(name, help=summary, description=description)
        add_meshfile_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        evaluated = evaluate_for_command(args)
        if evaluated is None:
            return 1
        print(report(*evaluated))
        return 0

    return add_parser, run


def _verdict(meshfile: str, spec: MeshSpec) -> str:
    services = len(spec.service_names())
    instances = sum(service.replicas for service in spec.services)
    return (
        f"{meshfile}: ok ({services} service{'s' if services != 1 else ''}, "
        f"{instances} instance{'s' if instances != 1 else ''})"
    )


add_parser, run = meshfile_command(
    "check",
    summary="evaluate and validate the Meshfile without starting anything",
    description="Evaluate and validate the Meshfile; print its problems, start nothing.",
    report=_verdict,
)
