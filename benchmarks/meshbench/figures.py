"""What every command shares: its options, its temporary directory, its figures.

A ``Figure`` is one number of the issue: its samples over the rounds (or
over the saves), the statistic judged (the median, or p99 of the saves), the
target it is held to and the verdict.  ``run_command`` parses the common
options, makes the temporary directory (and the bytecode cache with
``--bytecode``), turns SIGTERM into Ctrl-C so that every ``finally`` stops its
processes, prints the figures and writes them to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from hopbench.procs import BenchError, sigterm_as_keyboard_interrupt

from .bytecode import precompile, python_env


@attrs.frozen(kw_only=True)
class Figure:
    name: str
    unit: str
    target: float | None  # None: shown beside the judged figure, not judged
    samples: tuple[float, ...]
    statistic: str = "median"  # or "p50", "p99"
    details: dict[str, Any] = attrs.field(factory=dict)

    @property
    def value(self) -> float:
        if self.statistic == "median":
            return statistics.median(self.samples)
        fraction = int(self.statistic.removeprefix("p")) / 100
        return percentile(sorted(self.samples), fraction)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.value <= self.target

    def line(self) -> str:
        if self.target is None:
            target, verdict = "(no target)", ""
        else:
            target = f"target <= {self.target:g} {self.unit}"
            missed = f"MISSED by {self.value - self.target:.3g} {self.unit}"
            verdict = "met" if self.met else missed
        spread = f"{min(self.samples):.3g}..{max(self.samples):.3g}"
        return (
            f"  {self.name:<48} {self.statistic:>6} {self.value:9.3f} {self.unit:<3} "
            f"{target:<18} {verdict:<22} ({len(self.samples)} samples, {spread})"
        )

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "value": self.value, "met": self.met}


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, as ``hopbench.load.percentile``."""
    position = (len(sorted_values) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


def common_parser(prog: str, description: str, *, default_rounds: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--rounds", type=int, default=default_rounds, help=f"rounds (default {default_rounds})"
    )
    parser.add_argument(
        "--bytecode",
        action="store_true",
        help="run every process from bytecode pre-compiled into a temporary "
        "PYTHONPYCACHEPREFIX (default: PYTHONDONTWRITEBYTECODE=1, meshkit compiled from source)",
    )
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser


Measure = Callable[[argparse.Namespace, Path, dict[str, str]], list[Figure]]


def run_command(name: str, args: argparse.Namespace, measure: Measure) -> int:
    """Run ``measure(args, root, env)``, print its figures and write them as JSON."""
    if args.rounds < 1:
        print(f"{name}: --rounds must be at least 1", file=sys.stderr)
        return 2
    mode = "bytecode" if args.bytecode else "source"
    json_path = args.json or Path(f"benchmarks/results/{name}-{mode}.json")
    root = Path(tempfile.mkdtemp(prefix=f"meshkit-{name}-"))
    try:
        with sigterm_as_keyboard_interrupt():
            cache = None
            if args.bytecode:
                cache = root / "pycache"
                began = time.monotonic()
                count = precompile(cache)
                print(
                    f"{name}: pre-compiled {count} modules in {time.monotonic() - began:.1f} s",
                    file=sys.stderr,
                )
            figures = measure(args, root, python_env(cache=cache))
    except BenchError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    how = "pre-compiled bytecode" if args.bytecode else "meshkit compiled from source"
    print(
        f"\n{name} ({how}), {args.rounds} round(s) on {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end:"
    )
    for figure in figures:
        print(figure.line())
    result = {
        "command": name,
        "settings": {key: str(value) for key, value in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_average": os.getloadavg(),
        },
        "figures": [figure.to_json() for figure in figures],
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {json_path}")
    return 0
