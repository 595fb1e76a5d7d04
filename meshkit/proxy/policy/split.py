"""Weighted choices: which version gets a request, and whether a percentage applies.

Pure and seeded: the caller passes its ``random.Random``, so a test that seeds
it sees one exact sequence of choices.
"""

from __future__ import annotations

import bisect
import random as random_module
from collections.abc import Sequence

from meshkit.api import WeightedVersion


class WeightedChoice:
    """Chooses among ``versions`` with odds proportional to their weights.

    The cumulative weights are computed once; each choice is one draw and a
    binary search.  Versions with a weight of 0 or less are never chosen.
    """

    def __init__(self, versions: Sequence[WeightedVersion]) -> None:
        self._versions: list[str | None] = []
        self._cumulative: list[int] = []
        total = 0
        for weighted in versions:
            if weighted.weight > 0:
                total += weighted.weight
                self._versions.append(weighted.version)
                self._cumulative.append(total)
        if not self._versions:
            raise ValueError("a weighted choice needs at least one positive weight")
        self._total = total

    @property
    def total(self) -> int:
        return self._total

    def choose(self, random: random_module.Random) -> str | None:
        """One version (``None``: every version of the service)."""
        if len(self._versions) == 1:
            return self._versions[0]
        draw = random.randrange(self._total)
        return self._versions[bisect.bisect_right(self._cumulative, draw)]


def chance(percent: float, random: random_module.Random) -> bool:
    """True for ``percent`` % of calls: never for 0, always for 100."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    return random.random() * 100 < percent
