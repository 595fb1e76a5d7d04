"""Circuit breaker, outlier detection, load balancing and fault injection (fake clocks)."""

from __future__ import annotations

import random

from meshkit.api import BreakerLimits, FaultRule, HeaderMatch, OutlierSettings, RuntimeFault
from meshkit.proxy.config import Endpoint
from meshkit.proxy.policy.breaker import CircuitBreaker
from meshkit.proxy.policy.faults import NO_FAULT, FaultDecision, FaultInjector
from meshkit.proxy.policy.lb import LoadBalancer
from meshkit.proxy.policy.outlier import OutlierDetector


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def endpoints(count: int) -> list[Endpoint]:
    return [Endpoint(instance=f"i{n}", host="127.0.0.1", port=9000 + n) for n in range(count)]


# --- circuit breaker ---------------------------------------------------------


def test_breaker_admits_up_to_each_limit_and_overflows_at_once() -> None:
    breaker = CircuitBreaker(
        BreakerLimits(max_connections=2, max_requests=3, max_retries=1),
        service="catalog",
    )
    requests = [breaker.try_start_request() for _ in range(4)]
    assert [ticket is not None for ticket in requests] == [True, True, True, False]
    assert breaker.in_use("requests") == 3
    assert breaker.overflow_reason("requests") == (
        "circuit breaker open for 'catalog': 3 requests in use (max_requests=3)"
    )
    assert breaker.try_start_retry() is not None
    assert breaker.try_start_retry() is None
    assert breaker.try_open_connection() is not None
    assert breaker.try_open_connection() is not None
    assert breaker.try_open_connection() is None


def test_released_tickets_make_room_and_release_is_idempotent() -> None:
    breaker = CircuitBreaker(BreakerLimits(max_requests=1), service="catalog")
    ticket = breaker.try_start_request()
    assert ticket is not None
    assert breaker.try_start_request() is None
    ticket.release()
    ticket.release()
    assert breaker.in_use("requests") == 0
    assert breaker.try_start_request() is not None


def test_lowering_limits_refuses_new_work_but_keeps_counts() -> None:
    breaker = CircuitBreaker(BreakerLimits(max_requests=5), service="catalog")
    tickets = [breaker.try_start_request() for _ in range(3)]
    breaker.update_limits(BreakerLimits(max_requests=2))
    assert breaker.try_start_request() is None
    for ticket in tickets:
        assert ticket is not None
        ticket.release()
    assert breaker.try_start_request() is not None


# --- outlier detection -------------------------------------------------------


def detector(clock: FakeClock, count: int = 4, **settings: float) -> OutlierDetector:
    found = OutlierDetector(OutlierSettings(**settings), clock=clock)  # type: ignore[arg-type]
    found.set_instances(f"i{n}" for n in range(count))
    return found


def fail(found: OutlierDetector, instance: str, times: int) -> list[bool]:
    return [found.record_failure(instance) for _ in range(times)]


def test_ejected_after_consecutive_errors_and_back_after_base_time() -> None:
    clock = FakeClock()
    found = detector(clock)
    assert fail(found, "i0", 5) == [False, False, False, False, True]
    assert found.is_ejected("i0")
    assert found.ejected() == frozenset({"i0"})
    assert found.ejected_until("i0") == 130.0
    clock.now = 129.9
    assert found.is_ejected("i0")
    clock.now = 130.0
    assert not found.is_ejected("i0")
    assert found.ejected() == frozenset()


def test_a_success_resets_the_count() -> None:
    found = detector(FakeClock())
    fail(found, "i0", 4)
    found.record_success("i0")
    assert fail(found, "i0", 4) == [False] * 4
    assert not found.is_ejected("i0")


def test_ejection_time_multiplies_and_is_capped() -> None:
    clock = FakeClock()
    found = detector(clock, base_ejection=30.0, max_ejection=70.0)
    lengths = []
    for _ in range(4):
        fail(found, "i0", 5)
        until = found.ejected_until("i0")
        assert until is not None
        lengths.append(until - clock.now)
        clock.now = until
        assert not found.is_ejected("i0")
    assert lengths == [30.0, 60.0, 70.0, 70.0]
    assert found.ejection_count("i0") == 4


def test_staying_healthy_forgives_past_ejections() -> None:
    clock = FakeClock()
    found = detector(clock, base_ejection=30.0)
    fail(found, "i0", 5)
    clock.now += 30
    fail(found, "i0", 5)
    assert found.ejection_count("i0") == 2
    clock.now += 60
    assert not found.is_ejected("i0")
    clock.now += 60
    fail(found, "i0", 5)
    assert found.ejection_count("i0") == 1
    assert found.ejected_until("i0") == clock.now + 30


def test_never_the_last_healthy_instance() -> None:
    found = detector(FakeClock(), count=2, max_ejection_percent=100.0)
    assert fail(found, "i0", 5)[-1]
    assert fail(found, "i1", 10) == [False] * 10
    assert found.ejected() == frozenset({"i0"})
    alone = detector(FakeClock(), count=1, max_ejection_percent=100.0)
    assert fail(alone, "i0", 20) == [False] * 20


def test_max_ejection_percent_bounds_how_many_are_out() -> None:
    found = detector(FakeClock(), count=4, max_ejection_percent=50.0)
    for instance in ("i0", "i1", "i2"):
        fail(found, instance, 5)
    assert found.ejected() == frozenset({"i0", "i1"})
    small = detector(FakeClock(), count=3, max_ejection_percent=10.0)
    fail(small, "i0", 5)
    fail(small, "i1", 5)
    assert small.ejected() == frozenset({"i0"})
    none = detector(FakeClock(), count=3, max_ejection_percent=0.0)
    assert fail(none, "i0", 5)[-1] is False


def test_forgotten_instances_lose_their_state() -> None:
    found = detector(FakeClock(), count=3)
    fail(found, "i0", 5)
    found.set_instances(["i1", "i2"])
    assert not found.is_ejected("i0")
    assert found.ejected() == frozenset()


def test_a_restarted_instance_starts_with_a_clean_record() -> None:
    found = detector(FakeClock(), count=3)
    fail(found, "i0", 5)
    found.set_instances(["i0", "i1", "i2"], restarts={"i0": 0})
    assert found.is_ejected("i0")  # the same process: its record stays
    # The supervisor restarted it (and it is healthy again) between two configs.
    found.set_instances(["i0", "i1", "i2"], restarts={"i0": 1})
    assert not found.is_ejected("i0")
    fail(found, "i0", 4)
    assert not found.is_ejected("i0")  # five failures again, not one, eject it


# --- load balancing ----------------------------------------------------------


def test_round_robin_skips_ejected_and_prefers_untried() -> None:
    balancer = LoadBalancer(kind="round_robin", random=random.Random(0))
    pool = endpoints(3)
    assert [balancer.pick(pool).instance for _ in range(4)] == ["i0", "i1", "i2", "i0"]  # type: ignore[union-attr]
    picks = {balancer.pick(pool, ejected={"i1"}).instance for _ in range(6)}  # type: ignore[union-attr]
    assert picks == {"i0", "i2"}
    retry = balancer.pick(pool, ejected={"i1"}, avoid={"i0"})
    assert retry is not None and retry.instance == "i2"
    only_tried = balancer.pick(pool, ejected={"i1", "i2"}, avoid={"i0"})
    assert only_tried is not None and only_tried.instance == "i0"
    assert balancer.pick(pool, ejected={"i0", "i1", "i2"}) is None
    assert balancer.pick([]) is None


def test_round_robin_positions_are_kept_per_key() -> None:
    balancer = LoadBalancer(kind="round_robin", random=random.Random(0))
    pool = endpoints(2)
    assert balancer.pick(pool, key="v1") == pool[0]
    assert balancer.pick(pool, key="v2") == pool[0]
    assert balancer.pick(pool, key="v1") == pool[1]


def test_least_request_prefers_the_less_busy_of_two() -> None:
    balancer = LoadBalancer(kind="least_request", random=random.Random(11))
    pool = endpoints(2)
    for _ in range(5):
        balancer.request_started("i0")
    assert all(balancer.pick(pool) == pool[1] for _ in range(50))
    for _ in range(5):
        balancer.request_finished("i0")
    balancer.request_finished("i0")
    assert balancer.in_flight("i0") == 0


def test_least_request_spreads_load_and_avoids_the_busiest() -> None:
    balancer = LoadBalancer(kind="least_request", random=random.Random(3))
    pool = endpoints(4)
    balancer.request_started("i3")
    balancer.request_started("i3")
    counts = {endpoint.instance: 0 for endpoint in pool}
    for _ in range(400):
        chosen = balancer.pick(pool)
        assert chosen is not None
        counts[chosen.instance] += 1
    assert counts["i3"] == 0
    assert all(counts[name] > 60 for name in ("i0", "i1", "i2"))


# --- fault injection ---------------------------------------------------------


def injector(seed: int = 1, now: float = 1_000.0) -> tuple[FaultInjector, FakeClock]:
    clock = FakeClock(now)
    return FaultInjector(random=random.Random(seed), wall_clock=clock), clock


def test_abort_for_a_percentage_of_requests() -> None:
    faults, _ = injector()
    rule = FaultRule(abort_status=503, abort_percent=10.0)
    decisions = [
        faults.decide(service="catalog", headers=[], route_fault=rule) for _ in range(10_000)
    ]
    aborted = sum(decision.abort_status == 503 for decision in decisions)
    assert 900 <= aborted <= 1100
    assert {decision.flag for decision in decisions} == {"FI", "-"}


def test_delay_and_abort_are_drawn_apart() -> None:
    faults, _ = injector()
    rule = FaultRule(delay=2.0, delay_percent=100.0, abort_grpc="unavailable", abort_percent=100.0)
    decision = faults.decide(service="catalog", headers=[], route_fault=rule)
    assert decision == FaultDecision(delay=2.0, abort_grpc=14)
    assert decision.flag == "DI,FI"
    assert decision.aborts
    delay_only = faults.decide(
        service="catalog", headers=[], route_fault=FaultRule(delay=1.0, delay_percent=100.0)
    )
    assert (delay_only.flag, delay_only.aborts) == ("DI", False)


def test_a_header_condition_limits_the_fault() -> None:
    faults, _ = injector()
    rule = FaultRule(
        abort_status=500, abort_percent=100.0, headers=(HeaderMatch(name="x-chaos", value="1"),)
    )
    assert faults.decide(service="catalog", headers=[], route_fault=rule) is NO_FAULT
    hit = faults.decide(service="catalog", headers=[(b"x-chaos", b"1")], route_fault=rule)
    assert hit.abort_status == 500


def test_runtime_faults_apply_to_their_service_until_they_expire() -> None:
    faults, clock = injector(now=1_000.0)
    runtime = [
        RuntimeFault(
            service="catalog",
            fault=FaultRule(abort_status=503, abort_percent=100.0),
            expires_at=1_060.0,
        ),
        RuntimeFault(
            service="orders", fault=FaultRule(delay=5.0, delay_percent=100.0), expires_at=2_000.0
        ),
    ]
    assert faults.decide(service="catalog", headers=[], runtime_faults=runtime).abort_status == 503
    assert faults.decide(service="orders", headers=[], runtime_faults=runtime).delay == 5.0
    clock.now = 1_060.0
    assert faults.decide(service="catalog", headers=[], runtime_faults=runtime) is NO_FAULT


def test_longest_delay_and_first_abort_win_when_faults_combine() -> None:
    faults, _ = injector()
    route = FaultRule(delay=1.0, delay_percent=100.0, abort_status=500, abort_percent=100.0)
    runtime = [
        RuntimeFault(
            service="catalog",
            fault=FaultRule(delay=3.0, delay_percent=100.0, abort_status=503, abort_percent=100.0),
            expires_at=10**9,
        )
    ]
    decision = faults.decide(
        service="catalog", headers=[], route_fault=route, runtime_faults=runtime
    )
    assert decision == FaultDecision(delay=3.0, abort_status=500)


def test_fault_decisions_are_deterministic_for_a_seed() -> None:
    rule = FaultRule(delay=0.5, delay_percent=30.0, abort_status=503, abort_percent=30.0)
    first, _ = injector(seed=9)
    second, _ = injector(seed=9)
    assert [first.decide(service="s", headers=[], route_fault=rule) for _ in range(200)] == [
        second.decide(service="s", headers=[], route_fault=rule) for _ in range(200)
    ]
