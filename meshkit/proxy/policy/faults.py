"""Fault injection: whether a request is delayed and/or aborted, and how.

One mechanism for both kinds of fault: the route's ``FaultRule`` and the
service-wide ``RuntimeFault``s (the same rule with an expiry in wall-clock
seconds).  A fault applies to a request when its header conditions hold (and
its ``path_prefix``, if any, starts the request's path); its
delay and its abort are then each drawn with their own percentage from the
caller's seeded ``random.Random``.  When several faults apply, the longest
delay and the first abort win.
"""

from __future__ import annotations

import random as random_module
from collections.abc import Callable, Sequence

import attrs

from meshkit.api import GRPC_STATUS_CODES, FaultRule, RuntimeFault
from meshkit.proxy.codec.messages import Headers
from meshkit.proxy.policy.flags import FAULT_ABORT, FAULT_DELAY, flags_of
from meshkit.proxy.policy.matching import HeaderCondition, headers_hold
from meshkit.proxy.policy.split import chance


@attrs.frozen(kw_only=True)
class FaultDecision:
    """What to do to one request: wait ``delay`` seconds, then maybe answer an abort.

    ``abort_grpc`` is a gRPC status number (answer HTTP 200 with ``grpc-status``).
    """

    delay: float = 0.0
    abort_status: int | None = None
    abort_grpc: int | None = None

    @property
    def aborts(self) -> bool:
        return self.abort_status is not None or self.abort_grpc is not None

    @property
    def flag(self) -> str:
        """``DI``, ``FI``, both, or ``-``."""
        return flags_of(FAULT_DELAY if self.delay > 0 else "", FAULT_ABORT if self.aborts else "")


NO_FAULT = FaultDecision()


class FaultInjector:
    """Decides faults per request; header conditions are compiled once per rule."""

    def __init__(self, *, random: random_module.Random, wall_clock: Callable[[], float]) -> None:
        self._random = random
        self._wall_clock = wall_clock
        self._conditions: dict[FaultRule, list[HeaderCondition]] = {}

    def _holds(self, rule: FaultRule, headers: Headers, path: bytes) -> bool:
        if rule.path_prefix is not None:
            bare_path = path.partition(b"?")[0]
            if not bare_path.startswith(rule.path_prefix.encode("utf-8", "replace")):
                return False
        conditions = self._conditions.get(rule)
        if conditions is None:
            if len(self._conditions) > 1024:
                self._conditions.clear()
            conditions = [HeaderCondition(match) for match in rule.headers]
            self._conditions[rule] = conditions
        return headers_hold(conditions, headers)

    def active_runtime_faults(
        self, service: str, runtime_faults: Sequence[RuntimeFault]
    ) -> list[FaultRule]:
        """The runtime faults on ``service`` that have not expired."""
        now = self._wall_clock()
        return [
            fault.fault
            for fault in runtime_faults
            if fault.service == service and fault.expires_at > now
        ]

    def decide(
        self,
        *,
        service: str,
        headers: Headers,
        route_fault: FaultRule | None = None,
        runtime_faults: Sequence[RuntimeFault] = (),
        path: bytes = b"",
    ) -> FaultDecision:
        """The fault for one request to ``service``; ``NO_FAULT`` most of the time.

        ``path`` is the request target (a query is ignored); a rule with a
        ``path_prefix`` never applies to a request whose path is not given.
        """
        if route_fault is None and not runtime_faults:
            return NO_FAULT  # the common case, without a clock read or a list
        rules = [] if route_fault is None else [route_fault]
        rules.extend(self.active_runtime_faults(service, runtime_faults))
        delay = 0.0
        abort_status: int | None = None
        abort_grpc: int | None = None
        for rule in rules:
            if not self._holds(rule, headers, path):
                continue
            if rule.delay > 0 and chance(rule.delay_percent, self._random):
                delay = max(delay, rule.delay)
            aborting = rule.abort_status is not None or rule.abort_grpc is not None
            undecided = abort_status is None and abort_grpc is None
            if aborting and undecided and chance(rule.abort_percent, self._random):
                abort_status = rule.abort_status
                if rule.abort_grpc is not None:
                    unknown = GRPC_STATUS_CODES["unknown"]
                    abort_grpc = GRPC_STATUS_CODES.get(rule.abort_grpc, unknown)
        if delay == 0 and abort_status is None and abort_grpc is None:
            return NO_FAULT
        return FaultDecision(delay=delay, abort_status=abort_status, abort_grpc=abort_grpc)
