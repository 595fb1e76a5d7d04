from __future__ import annotations

from functools import partial

import trio

from meshkit.dsl.spec import HealthCheck
from meshkit.runtime.policy.health import ProbeStateMachine, check_for
from meshkit.runtime.probes import probe_once, run_prober


def test_a_service_without_a_check_gets_tcp() -> None:
    assert check_for(None).kind == "tcp"
    custom = HealthCheck(path="/healthz")
    assert check_for(custom) is custom


def test_thresholds_move_between_verdicts() -> None:
    check = HealthCheck(success_threshold=2, failure_threshold=3)
    machine = ProbeStateMachine(check, started_at=0.0)
    assert machine.record(success=True) is None
    assert machine.record(success=True) == "healthy"
    assert machine.record(success=False, error="503") is None
    assert machine.record(success=False, error="503") is None
    assert machine.record(success=True) is None
    for _ in range(2):
        assert machine.record(success=False, error="503") is None
    assert machine.record(success=False, error="refused") == "unhealthy"
    assert machine.last_error == "refused"
    assert machine.record(success=True) is None
    assert machine.record(success=True) == "healthy"


def test_starting_instance_becomes_unhealthy_after_failure_threshold() -> None:
    machine = ProbeStateMachine(HealthCheck(failure_threshold=2), started_at=0.0)
    assert machine.record(success=False) is None
    assert machine.verdict == "starting"
    assert machine.record(success=False) == "unhealthy"


def test_schedule_honours_initial_delay_and_period() -> None:
    machine = ProbeStateMachine(HealthCheck(initial_delay=3.0, period=2.0), started_at=10.0)
    assert machine.next_probe_at == 13.0
    machine.probe_started(13.0)
    assert machine.next_probe_at == 13.1  # starting: polled until its first success
    assert machine.record(success=True) == "healthy"
    assert machine.next_probe_at == 15.0


async def test_prober_reports_changes_on_trio_clock(autojump_clock: trio.abc.Clock) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    check = HealthCheck(kind="tcp", period=1.0, initial_delay=2.0, failure_threshold=2)
    machine = ProbeStateMachine(check, started_at=trio.current_time())
    seen: list[tuple[str, float]] = []
    with trio.move_on_after(10):
        await run_prober(
            machine, port, lambda verdict, _err: seen.append((verdict, trio.current_time()))
        )
    assert [verdict for verdict, _ in seen] == ["unhealthy"]
    assert seen[0][1] == 3.0


async def test_http_probe_against_a_real_server() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(4096)
        await stream.send_all(
            b"HTTP/1.1 503 Nope\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        error = await probe_once(HealthCheck(kind="http", path="/healthz"), port)
        assert error == "GET /healthz answered 503"
        assert await probe_once(HealthCheck(kind="tcp"), port) is None
        nursery.cancel_scope.cancel()


def test_a_starting_instance_is_polled_between_probes_and_found_healthy_at_once() -> None:
    machine = ProbeStateMachine(HealthCheck(period=1.0, failure_threshold=2), started_at=0.0)
    polls = []
    while machine.next_probe_at < 1.0:
        now = machine.next_probe_at
        polls.append(round(now, 3))
        machine.probe_started(now)
        # The app listens from 0.45 on; failed polls in between count for nothing.
        verdict = machine.record(success=now >= 0.45, error="refused")
        assert verdict in (None, "healthy") and machine.verdict != "unhealthy"
        if verdict == "healthy":
            break
    assert polls == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert machine.verdict == "healthy"
    # Healthy: back to the period (from the last scheduled probe); failures count again.
    assert machine.next_probe_at == 1.0
    machine.probe_started(1.0)
    assert machine.next_probe_at == 2.0
    assert machine.record(success=False, error="503") is None
    machine.probe_started(2.0)
    assert machine.record(success=False, error="503") == "unhealthy"


def test_only_scheduled_probes_make_a_starting_instance_unhealthy() -> None:
    machine = ProbeStateMachine(HealthCheck(period=1.0, failure_threshold=2), started_at=0.0)
    verdicts = []
    while machine.next_probe_at <= 1.0:
        now = machine.next_probe_at
        machine.probe_started(now)
        verdicts.append((round(now, 3), machine.record(success=False, error="refused")))
    assert verdicts[-1] == (1.0, "unhealthy")
    assert [v for _, v in verdicts[:-1]] == [None] * (len(verdicts) - 1)
    assert machine.last_error == "refused"
