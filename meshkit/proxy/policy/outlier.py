"""Outlier detection per destination (Envoy's consecutive-errors ejection).

An instance that fails ``consecutive_errors`` times in a row (a 5xx or a
connect failure, as the caller classifies) is ejected: it gets no traffic for
``base_ejection`` x (its number of ejections), at most ``max_ejection``, then
comes back by itself as the clock passes.  Each ``base_ejection`` it stays
healthy after returning forgives one past ejection.  At most
``max_ejection_percent`` of the instances are out at once (but one may always
be, if others remain), and the last instance in service is never ejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import attrs

from meshkit.api import OutlierSettings


@attrs.define
class _InstanceState:
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float | None = None
    returned_at: float | None = None
    restarts: int = 0


class OutlierDetector:
    """Failure counts and ejections of one destination's instances."""

    def __init__(self, settings: OutlierSettings, *, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._instances: dict[str, _InstanceState] = {}

    def set_instances(
        self, instances: Iterable[str], *, restarts: Mapping[str, int] | None = None
    ) -> None:
        """The destination's current instances; state of the others is forgotten, and of
        one the supervisor restarted since (``restarts`` changed): a new process starts
        with a clean record."""
        counts = restarts or {}
        kept: dict[str, _InstanceState] = {}
        for instance in instances:
            state = self._instances.get(instance)
            count = counts.get(instance, 0)
            if state is None or state.restarts != count:
                state = _InstanceState(restarts=count)
            kept[instance] = state
        self._instances = kept

    def _state(self, instance: str) -> _InstanceState:
        state = self._instances.get(instance)
        if state is None:
            state = self._instances[instance] = _InstanceState()
        return state

    def _refresh(self, state: _InstanceState, now: float) -> None:
        if state.ejected_until is not None and now >= state.ejected_until:
            state.ejected_until = None
            state.returned_at = now
            state.consecutive_failures = 0

    def is_ejected(self, instance: str) -> bool:
        state = self._instances.get(instance)
        if state is None:
            return False
        self._refresh(state, self._clock())
        return state.ejected_until is not None

    def ejected(self) -> frozenset[str]:
        """The instances out of service now."""
        # Asked on every request: the clock is read only when some instance was ejected.
        out: list[str] = []
        now: float | None = None
        for instance, state in self._instances.items():
            if state.ejected_until is None:
                continue
            if now is None:
                now = self._clock()
            self._refresh(state, now)
            if state.ejected_until is not None:
                out.append(instance)
        return frozenset(out)

    def record_success(self, instance: str) -> None:
        state = self._state(instance)
        if state.ejected_until is not None:
            self._refresh(state, self._clock())
        state.consecutive_failures = 0

    def record_failure(self, instance: str) -> bool:
        """Count a failure; True when it ejected the instance."""
        now = self._clock()
        state = self._state(instance)
        self._refresh(state, now)
        if state.ejected_until is not None:
            return False
        state.consecutive_failures += 1
        if state.consecutive_failures < self.settings.consecutive_errors:
            return False
        if not self._may_eject_one_more():
            return False
        self._eject(state, now)
        return True

    def _may_eject_one_more(self) -> bool:
        total = len(self._instances)
        out = len(self.ejected())
        if total - out <= 1:
            return False
        percent = self.settings.max_ejection_percent
        if percent <= 0:
            return False
        limit = max(1, math.floor(total * percent / 100))
        return out + 1 <= limit

    def _eject(self, state: _InstanceState, now: float) -> None:
        base = self.settings.base_ejection
        if state.returned_at is not None and base > 0:
            forgiven = int((now - state.returned_at) // base)
            state.ejections = max(0, state.ejections - forgiven)
        state.ejections += 1
        state.consecutive_failures = 0
        state.ejected_until = now + min(base * state.ejections, self.settings.max_ejection)

    def ejection_count(self, instance: str) -> int:
        """How many past ejections count towards the next one's length."""
        state = self._instances.get(instance)
        return 0 if state is None else state.ejections

    def ejected_until(self, instance: str) -> float | None:
        """When an ejected instance comes back (clock time), or None."""
        if not self.is_ejected(instance):
            return None
        return self._instances[instance].ejected_until
