"""Per-destination state that outlives config swaps, and the route tables of the current config.

A sidecar keeps, for every destination service, a circuit breaker (with the
requests in flight), an outlier detector (failure counts, ejections), a retry
budget (the window of requests and retries) and a load balancer (round-robin
positions, requests in flight per instance).  A config update must not reset
them, or every reload would forgive ejected instances and empty the breakers:
``Destinations.sync(config)`` re-configures what the new config changed and
forgets only the destinations that are gone.

Pure state, no event loop: the clock and the random source are injected.
"""

from __future__ import annotations

import logging
import random as random_module
from collections.abc import Callable

from meshkit.api import DestinationPolicy, Forward, RetryRule, RouteRule, RouteTable
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.policy.breaker import CircuitBreaker
from meshkit.proxy.policy.budget import RetryBudget
from meshkit.proxy.policy.faults import FaultInjector
from meshkit.proxy.policy.lb import LoadBalancer
from meshkit.proxy.policy.matching import RouteMatcher
from meshkit.proxy.policy.outlier import OutlierDetector
from meshkit.proxy.policy.retry import RetryPolicy
from meshkit.proxy.policy.split import WeightedChoice

log = logging.getLogger("meshkit.proxy")

DEFAULT_RULE = RouteRule()
"""The rule of a destination without a route table: forward to every version."""


class DestinationState:
    """The live resilience state of one destination service."""

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        clock: Callable[[], float],
        random: random_module.Random,
    ) -> None:
        self.service = policy.service
        self.policy = policy
        self._clock = clock
        self.breaker = CircuitBreaker(policy.breaker, service=policy.service)
        self.outlier = OutlierDetector(policy.outlier, clock=clock)
        self.budget = RetryBudget(policy.retry_budget, clock=clock)
        self.balancer = LoadBalancer(kind=policy.load_balancer, random=random)

    def reconfigure(self, policy: DestinationPolicy) -> None:
        """Apply a changed policy; counts in flight, ejections and positions are kept."""
        if policy == self.policy:
            return
        self.breaker.update_limits(policy.breaker)
        self.outlier.settings = policy.outlier
        if policy.retry_budget != self.policy.retry_budget:
            self.budget = RetryBudget(policy.retry_budget, clock=self._clock)
        self.balancer.kind = policy.load_balancer
        self.policy = policy


class Destinations:
    """Every destination's state, plus the compiled route tables of the config in use."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        random: random_module.Random,
    ) -> None:
        self.clock = clock
        self.random = random
        self.faults = FaultInjector(random=random, wall_clock=wall_clock)
        self._states: dict[str, DestinationState] = {}
        self._matchers: dict[str, RouteMatcher] = {}
        self._synced: ProxyConfig | None = None
        self._choices: dict[Forward, WeightedChoice] = {}
        self._retry_policies: dict[RetryRule, RetryPolicy] = {}

    def sync(self, config: ProxyConfig) -> None:
        """Make the state follow ``config`` (cheap when ``config`` is the one last synced)."""
        if config is self._synced:
            return
        self._synced = config
        matchers: dict[str, RouteMatcher] = {}
        for table in config.routes:
            matchers[table.service] = self._compile(table)
        self._matchers = matchers
        self._choices.clear()
        self._retry_policies.clear()
        policies = {policy.service: policy for policy in config.policies}
        services = {cluster.name for cluster in config.clusters} | set(policies)
        for name in list(self._states):
            if name not in services:
                del self._states[name]
        for name in services:
            policy = policies.get(name, DestinationPolicy(service=name))
            state = self._states.get(name)
            if state is None:
                self._states[name] = DestinationState(policy, clock=self.clock, random=self.random)
            else:
                state.reconfigure(policy)
        for cluster in config.clusters:
            self._states[cluster.name].outlier.set_instances(
                (endpoint.instance for endpoint in cluster.endpoints),
                restarts={endpoint.instance: endpoint.restarts for endpoint in cluster.endpoints},
            )

    def _compile(self, table: RouteTable) -> RouteMatcher:
        try:
            return RouteMatcher(table)
        except ValueError as error:
            previous = self._matchers.get(table.service)
            log.error(
                "route table of %r refused (%s); %s",
                table.service,
                error,
                "keeping the previous one" if previous else "forwarding to every version",
            )
            return previous or RouteMatcher(RouteTable(service=table.service))

    def matcher(self, service: str) -> RouteMatcher | None:
        """The compiled route table of ``service`` (None: the default rule applies)."""
        return self._matchers.get(service)

    def state(self, service: str) -> DestinationState:
        """The state of ``service``, created with the default policy when unknown."""
        state = self._states.get(service)
        if state is None:
            state = DestinationState(
                DestinationPolicy(service=service), clock=self.clock, random=self.random
            )
            self._states[service] = state
        return state

    def weighted_choice(self, action: Forward) -> WeightedChoice | None:
        """The version chooser of a forward action (None when no weight is positive)."""
        choice = self._choices.get(action)
        if choice is None:
            try:
                choice = WeightedChoice(action.versions)
            except ValueError:
                return None
            self._choices[action] = choice
        return choice

    def retry_policy(self, rule: RetryRule) -> RetryPolicy:
        policy = self._retry_policies.get(rule)
        if policy is None:
            policy = RetryPolicy(rule, random=self.random)
            self._retry_policies[rule] = policy
        return policy
