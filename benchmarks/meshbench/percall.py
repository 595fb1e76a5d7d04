"""Per-request cost of a pure core: interleaved rounds of each case, medians, cost over a baseline."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence


def compare(
    description: str,
    label: str,
    kinds: Sequence[str],
    one_round: Callable[[str, int], float],
    *,
    requests: int,
) -> None:
    """Run ``one_round(kind, requests)`` (microseconds per request) for every kind,
    ``--rounds`` times in rotating order, and print the medians; ``kinds[0]`` is
    the baseline."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--requests", type=int, default=requests)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_number in range(args.rounds):
        shift = round_number % len(kinds)
        for kind in [*kinds[shift:], *kinds[:shift]]:
            results[kind].append(one_round(kind, args.requests))
    baseline = statistics.median(results[kinds[0]])
    width = max(len(label), *map(len, kinds))
    print(f"{label:<{width}} {'us/request':>11} {'over baseline':>14}")
    for kind in kinds:
        median = statistics.median(results[kind])
        print(f"{kind:<{width}} {median:>11.3f} {median - baseline:>14.3f}")
