"""The I/O half of health checks: one HTTP GET (h11) or TCP connect on 127.0.0.1.

``run_prober`` drives a ``ProbeStateMachine`` with real probes on trio's clock
and calls back whenever the verdict changes.  Cancel its scope to stop it.
"""

from __future__ import annotations

from collections.abc import Callable

import h11
import trio

from meshkit.dsl.spec import HealthCheck
from meshkit.runtime.policy.health import ProbeStateMachine, ProbeVerdict

LOOPBACK = "127.0.0.1"


async def probe_once(check: HealthCheck, port: int) -> str | None:
    """Run one probe; None on success, else a readable reason for the failure."""
    try:
        with trio.fail_after(check.timeout):
            stream = await trio.open_tcp_stream(LOOPBACK, port)
            async with stream:
                if check.kind == "tcp":
                    return None
                return await _http_get(stream, check.path, port)
    except trio.TooSlowError:
        return f"{check.kind} probe on port {port} timed out after {check.timeout}s"
    except OSError as exc:
        return f"{check.kind} probe on port {port} failed: {exc.strerror or exc}"
    except (trio.BrokenResourceError, h11.ProtocolError) as exc:
        return f"http probe on port {port} got a broken response: {exc}"


async def _http_get(stream: trio.abc.Stream, path: str, port: int) -> str | None:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=path,
        headers=[
            ("Host", f"{LOOPBACK}:{port}"),
            ("Connection", "close"),
            ("User-Agent", "meshkit-probe"),
        ],
    )
    data = conn.send(request) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
            continue
        if isinstance(event, h11.Response):
            if 200 <= event.status_code < 400:
                return None
            return f"GET {path} answered {event.status_code}"
        if isinstance(event, h11.ConnectionClosed):
            return f"GET {path}: connection closed before a response"


async def run_prober(
    machine: ProbeStateMachine,
    port: int,
    on_verdict: Callable[[ProbeVerdict, str | None], None],
    verify: Callable[[], str | None] | None = None,
) -> None:
    """Probe forever on ``machine``'s schedule; report each change of verdict.

    ``verify`` runs after each probe that answered until the instance is
    healthy; a reason it gives fails the probe (the port answered, but not
    from the instance's own processes).  Once healthy the app holds the port,
    and the socket table need not be read on every probe.
    """
    while True:
        await trio.sleep_until(machine.next_probe_at)
        machine.probe_started(trio.current_time())
        error = await probe_once(machine.check, port)
        if error is None and verify is not None and machine.verdict != "healthy":
            error = verify()
        verdict = machine.record(success=error is None, error=error)
        if verdict is not None:
            on_verdict(verdict, machine.last_error)
