from __future__ import annotations

from meshkit.dsl.spec import RestartPolicy
from meshkit.runtime.policy.restart import RestartBackoff

POLICY = RestartPolicy(backoff_initial=0.5, backoff_max=4.0, reset_after=10.0)


def crash(backoff: RestartBackoff, *, at: float, after: float = 0.1, code: int = 1) -> float:
    backoff.record_start(at)
    decision = backoff.record_exit(now=at + after, exit_code=code)
    assert decision.restart
    return decision.delay


def test_delay_doubles_up_to_the_maximum() -> None:
    backoff = RestartBackoff(POLICY, loop_threshold=100)
    delays = [crash(backoff, at=i * 100.0) for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_delay_resets_after_a_stable_run() -> None:
    backoff = RestartBackoff(POLICY)
    assert [crash(backoff, at=0.0), crash(backoff, at=1.0)] == [0.5, 1.0]
    assert crash(backoff, at=5.0, after=10.0) == 0.5


def test_restart_loop_is_reported_but_still_restarted() -> None:
    backoff = RestartBackoff(POLICY)
    decisions = []
    for i in range(6):
        backoff.record_start(float(i))
        decisions.append(backoff.record_exit(now=i + 0.5, exit_code=2))
    assert [d.in_restart_loop for d in decisions] == [False] * 4 + [True] * 2
    assert all(d.restart for d in decisions)
    assert "restart loop" in decisions[-1].reason
    backoff.record_start(200.0)
    assert not backoff.record_exit(now=200.5, exit_code=2).in_restart_loop


def test_modes_no_and_on_failure() -> None:
    never = RestartBackoff(RestartPolicy(mode="no"))
    assert not never.record_exit(now=1.0, exit_code=1).restart
    on_failure = RestartBackoff(RestartPolicy(mode="on_failure"))
    clean = on_failure.record_exit(now=1.0, exit_code=0)
    assert not clean.restart and "status 0" in clean.reason
    assert on_failure.record_exit(now=2.0, exit_code=1).restart
