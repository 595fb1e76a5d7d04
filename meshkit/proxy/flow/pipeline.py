"""The L7 flow of one request to a destination service (outbound, upstream, gateway).

In order, each step deciding through a pure core:

1. the service's route table, first match (``matching``): no match is ``404 NR``;
   a direct response or a redirect is answered here;
2. a version by weight (``split``), its instances minus the ejected ones
   (``outlier``), all of them when every one is ejected (panic mode,
   ``lb.routable_ejections``): a version without instances is ``503 UH``;
3. the circuit breaker admits the request or answers ``503 UO`` at once (an
   attempt that needs a new connection past ``max_connections`` too: the
   connection pools take the tickets, the attempt reports ``UO`` unanswered);
4. faults of the route and the runtime faults of the service (``faults``):
   a delay (``DI``), an abort (``FI``; for gRPC a 200 with ``grpc-status``);
5. attempts: an instance from the load balancer (another one on a retry),
   one ``attempt`` each within the per-try timeout; after each, the retry
   policy, the retry budget and the breaker's retry limit decide whether to
   try again after a jittered backoff.  A retriable response is held back
   (never half-sent) only when a retry will follow, so the last answer is
   always the endpoint's own (flag ``URX`` in the log when retries ran out);
6. the route timeout covers steps 5's attempts and waits: ``504 UT``.
   Once a response starts to flow to the client no timeout cuts it.

Faults apply on the caller's side only (as in Istio), so a fault on a service
reaches every caller, the gateway included, once per request.

I/O is injected: ``attempt`` sends one try to one endpoint (``forward`` in the
sidecar, a fake in tests), ``reply`` sends a local reply, ``read_body`` reads
the request body ahead for replay.  Time is trio's, so tests run it on the
autojump clock.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs
import trio

from meshkit.api import DirectResponse, Forward, Redirect, RouteRule
from meshkit.proxy.codec.messages import Headers, RequestHead
from meshkit.proxy.config import Cluster, Endpoint, ProxyConfig
from meshkit.proxy.flow.attempt import Outcome, ResponseHook, request_has_body
from meshkit.proxy.flow.replay import ReplayableBody, RequestBodySource
from meshkit.proxy.flow.retrying import HeldRetry, TryState, decide_retry, failure_of
from meshkit.proxy.policy.destinations import DEFAULT_RULE, Destinations, DestinationState
from meshkit.proxy.policy.faults import FaultDecision
from meshkit.proxy.policy.flags import (
    CONNECT_FAILURE,
    FAULT_ABORT,
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    OVERFLOW,
    RETRY_LIMIT_EXCEEDED,
    TIMEOUT,
    flags_of,
)
from meshkit.proxy.policy.lb import routable_ejections
from meshkit.proxy.policy.retry import AttemptOutcome, Failure
from meshkit.proxy.policy.rewrite import apply_header_ops, redirect_location, rewrite_target
from meshkit.proxy.policy.split import chance

AttemptFunction = Callable[
    [Endpoint, RequestHead, RequestBodySource | None, ResponseHook], Awaitable[Outcome]
]
"""One try to one endpoint: ``(endpoint, head, body source, response hook) -> Outcome``."""


class ReplyFunction(Protocol):
    async def __call__(
        self,
        status: int,
        flag: str,
        reason: str,
        *,
        extra: Headers | None = None,
        body: bytes | None = None,
    ) -> bool: ...


MirrorFunction = Callable[[Endpoint, RequestHead, bytes], bool]

_ANSWER_OF_FAILURE: dict[Failure, tuple[int, str]] = {
    "connect-failure": (503, CONNECT_FAILURE),
    "reset": (502, "UC"),
    "refused-stream": (503, "UC"),
    "per-try-timeout": (504, TIMEOUT),
}


@attrs.frozen(kw_only=True)
class Result:
    """What the flow did: the status, the flag for the access log, keep-alive, and the
    endpoint that answered (None: the mesh answered before reaching one; for the
    metrics, not part of what makes two results equal)."""

    status: int
    flag: str
    keep_alive: bool
    upstream: Endpoint | None = attrs.field(default=None, eq=False)


def _fault_reply(fault: FaultDecision) -> tuple[int, Headers]:
    if fault.abort_grpc is not None:
        return 200, [
            (b"content-type", b"application/grpc"),
            (b"grpc-status", str(fault.abort_grpc).encode()),
            (b"grpc-message", b"aborted by fault injection"),
        ]
    return (fault.abort_status or 503), []


async def route_to_service(
    *,
    destinations: Destinations,
    config: ProxyConfig,
    cluster: Cluster,
    head: RequestHead,
    target: bytes,
    attempt: AttemptFunction,
    reply: ReplyFunction,
    read_body: Callable[[], Awaitable[ReplayableBody]],
    mirror: MirrorFunction | None = None,
) -> Result:
    """Apply the service's rules and resilience to one request (``target``: origin form)."""
    destinations.sync(config)
    service = cluster.name
    if head.target != target:
        head = attrs.evolve(head, target=target)
    matcher = destinations.matcher(service)
    rule = DEFAULT_RULE if matcher is None else matcher.first_match(head)
    if rule is None:
        path = target.partition(b"?")[0].decode("latin-1")
        reason = f"no route rule of '{service}' matches {head.method.decode('latin-1')} {path}"
        return await _local(reply, 404, NO_ROUTE, reason)
    action = rule.action
    if isinstance(action, DirectResponse):
        keep = await reply(
            action.status,
            "",
            f"direct response of a route rule of '{service}'",
            body=action.body.encode(),
        )
        return Result(status=action.status, flag="-", keep_alive=keep)
    if isinstance(action, Redirect):
        location = redirect_location(target, head.headers, action)
        keep = await reply(
            action.status,
            "",
            f"redirected by a route rule of '{service}'",
            extra=[(b"location", location)],
        )
        return Result(status=action.status, flag="-", keep_alive=keep)
    return await _forward(
        destinations, config, cluster, head, rule, action, attempt, reply, read_body, mirror
    )


async def _local(reply: ReplyFunction, status: int, flag: str, reason: str) -> Result:
    keep = await reply(status, flag, reason)
    return Result(status=status, flag=flag, keep_alive=keep)


def _endpoints_of(cluster: Cluster, version: str | None) -> Sequence[Endpoint]:
    if version is None:
        return cluster.endpoints  # no split (the common case): no copy per request
    return [e for e in cluster.endpoints if e.version == version]


async def _forward(
    destinations: Destinations,
    config: ProxyConfig,
    cluster: Cluster,
    head: RequestHead,
    rule: RouteRule,
    action: Forward,
    attempt: AttemptFunction,
    reply: ReplyFunction,
    read_body: Callable[[], Awaitable[ReplayableBody]],
    mirror: MirrorFunction | None,
) -> Result:
    service = cluster.name
    destination = destinations.state(service)
    choice = destinations.weighted_choice(action)
    if choice is None:
        reason = f"no version of '{service}' has a positive weight"
        return await _local(reply, 503, NO_HEALTHY_UPSTREAM, reason)
    version = choice.choose(destinations.random)
    endpoints = _endpoints_of(cluster, version)
    if not endpoints:
        what = f"'{service}'" if version is None else f"version '{version}' of '{service}'"
        return await _local(reply, 503, NO_HEALTHY_UPSTREAM, f"no healthy instance of {what}")
    ticket = destination.breaker.try_start_request()
    if ticket is None:
        return await _local(reply, 503, OVERFLOW, destination.breaker.overflow_reason("requests"))
    try:
        fault = destinations.faults.decide(
            service=service,
            headers=head.headers,
            route_fault=rule.fault,
            runtime_faults=config.runtime_faults,
            path=head.target,
        )
        if fault.delay > 0:
            await trio.sleep(fault.delay)
        if fault.aborts:
            status, extra = _fault_reply(fault)
            keep = await reply(
                status, FAULT_ABORT, f"aborted by fault injection on '{service}'", extra=extra
            )
            return Result(status=status, flag=fault.flag, keep_alive=keep)
        destination.budget.record_request()
        body = await read_body() if rule.retry is not None or rule.mirror is not None else None
        upstream_head = head
        if action.rewrite_prefix is not None:
            upstream_head = attrs.evolve(
                upstream_head, target=rewrite_target(head.target, rule.match, action.rewrite_prefix)
            )
        if not rule.request_headers.empty:
            upstream_head = attrs.evolve(
                upstream_head, headers=apply_header_ops(head.headers, rule.request_headers)
            )
        if mirror is not None and rule.mirror is not None and body is not None:
            _mirror(destinations, destination, cluster, rule, upstream_head, body, mirror)
        result = await _attempts(
            destinations, destination, rule, endpoints, version, upstream_head, body, attempt, reply
        )
        fault_flag = fault.flag
        if fault_flag == "-":
            return result  # no fault (nearly always): the result's own flag stands
        flag = flags_of(fault_flag, "" if result.flag == "-" else result.flag)
        return attrs.evolve(result, flag=flag)
    finally:
        ticket.release()


def _mirror(
    destinations: Destinations,
    destination: DestinationState,
    cluster: Cluster,
    rule: RouteRule,
    head: RequestHead,
    body: ReplayableBody,
    mirror: MirrorFunction,
) -> None:
    assert rule.mirror is not None
    data = body.data
    if data is None or not chance(rule.mirror.percent, destinations.random):
        return
    targets = _endpoints_of(cluster, rule.mirror.version)
    endpoint = destination.balancer.pick(
        targets, ejected=destination.outlier.ejected(), key=f"mirror:{rule.mirror.version}"
    )
    if endpoint is not None:
        mirror(endpoint, head, data)


async def _attempts(
    destinations: Destinations,
    destination: DestinationState,
    rule: RouteRule,
    endpoints: Sequence[Endpoint],
    version: str | None,
    head: RequestHead,
    body: ReplayableBody | None,
    attempt: AttemptFunction,
    reply: ReplyFunction,
) -> Result:
    service = destination.service
    policy = None if rule.retry is None else destinations.retry_policy(rule.retry)
    # The body size a retry may replay: None when it was not (or could not be) kept.
    buffered = (None if request_has_body(head) else 0) if body is None else body.buffered_bytes
    tried: set[str] = set()
    retries_done = 0
    last_failure: tuple[Failure, str] | None = None
    route_deadline = trio.current_time() + rule.timeout if rule.timeout > 0 else math.inf
    in_flight: Endpoint | None = None  # the instance of the try under way
    with trio.CancelScope(deadline=route_deadline) as route_scope, HeldRetry() as held:
        while True:
            endpoint = destination.balancer.pick(
                endpoints,
                ejected=routable_ejections(endpoints, destination.outlier.ejected()),
                avoid=tried,
                key=version or "",
            )
            if endpoint is None:
                reason = f"no healthy instance of '{service}' left to try"
                return await _local(reply, 503, NO_HEALTHY_UPSTREAM, reason)
            tried.add(endpoint.instance)
            per_try = None if policy is None else policy.rule.per_try_timeout
            # Without a per-try timeout the route's scope bounds the try (one scope less).
            try_scope = (
                route_scope
                if per_try is None
                else trio.CancelScope(deadline=trio.current_time() + per_try)
            )
            with contextlib.nullcontext() if try_scope is route_scope else try_scope:
                state = TryState(
                    rule=rule,
                    destination=destination,
                    endpoint=endpoint,
                    policy=policy,
                    retries_done=retries_done,
                    method=head.method,
                    buffered_bytes=buffered,
                    route_scope=route_scope,
                    try_scope=try_scope,
                    held=held,
                )
                destination.balancer.request_started(endpoint.instance)
                in_flight = endpoint
                try:
                    outcome: Outcome | None = await attempt(
                        endpoint, head, None if body is None else body.source(), state.on_response
                    )
                finally:
                    destination.balancer.request_finished(endpoint.instance)
                in_flight = None
            if state.retry is None:
                held.release()  # this try (a retry or not) has ended and none is admitted yet
            if try_scope.cancelled_caught:
                outcome = None
            if outcome is not None and not outcome.answered and outcome.flag == OVERFLOW:
                # No connection admitted: not the instance's fault, and never queued or retried.
                return await _local(reply, 503, OVERFLOW, outcome.reason)
            if outcome is not None and outcome.answered:
                flag = outcome.flag
                if flag == "-" and state.exhausted:
                    flag = RETRY_LIMIT_EXCEEDED
                return Result(
                    status=outcome.status,
                    flag=flag,
                    keep_alive=outcome.keep_alive,
                    upstream=endpoint,
                )
            failed = failure_of(outcome, state, per_try)
            if failed is not None:
                last_failure = failed
                destination.outlier.record_failure(endpoint.instance)
            decision = state.retry
            if decision is None and last_failure is not None and policy is not None:
                decision = held.hold(
                    *decide_retry(
                        policy,
                        destination,
                        outcome=AttemptOutcome.failed(last_failure[0]),
                        retries_done=retries_done,
                        method=head.method,
                        buffered_bytes=buffered,
                        deadline=route_scope.deadline,
                    )
                )
            if decision is None or not decision.retry:
                assert last_failure is not None
                status, flag = _ANSWER_OF_FAILURE[last_failure[0]]
                if retries_done:
                    flag = flags_of(flag, RETRY_LIMIT_EXCEEDED)
                reason = f"'{service}' instance '{endpoint.instance}': {last_failure[1]}"
                return await _local(reply, status, flag, reason)
            await trio.sleep(decision.delay)
            retries_done += 1
            last_failure = None
    return await _route_timed_out(destination, in_flight, rule.timeout, reply)


async def _route_timed_out(
    destination: DestinationState, in_flight: Endpoint | None, timeout: float, reply: ReplyFunction
) -> Result:
    """504 UT; a try the timeout cut counts against its instance, so a hung one is
    ejected as its requests time out, before its health checks fail."""
    if in_flight is not None:
        destination.outlier.record_failure(in_flight.instance)
    reason = f"no answer from '{destination.service}' within {timeout:g}s"
    return await _local(reply, 504, TIMEOUT, reason)
