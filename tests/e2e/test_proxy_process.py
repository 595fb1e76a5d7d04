"""``python -m meshkit.proxy`` as a real process, driven by a stub control plane and
curl: ready report, traffic, config update, lost control plane, SIGTERM drain."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from meshkit.api.access import write_token
from meshkit.proxy.config import AppTarget, Cluster, Endpoint, Listener, ProxyConfig
from tests.unit.test_proxy_harness import Backend, StubControlPlane

pytestmark = pytest.mark.e2e

INSTANCE = "catalog-0"


def config(app_port: int, endpoints: tuple[Endpoint, ...] = ()) -> ProxyConfig:
    return ProxyConfig(
        version=1,
        mesh="shop",
        instance=INSTANCE,
        service="catalog",
        app=AppTarget(port=app_port),
        listeners=(
            Listener(name="inbound", kind="inbound"),
            Listener(name="outbound", kind="outbound"),
            Listener(name="admin", kind="admin"),
        ),
        clusters=(Cluster(name="catalog", endpoints=endpoints),),
        # Started without a bootstrap token, the sidecar has no certificate:
        # its inbound listener must accept plaintext (mTLS: tests/e2e/test_mtls.py).
        mtls="permissive",
    )


async def curl(*args: str) -> tuple[int, str]:
    """``(http status, body)`` of one curl call."""
    result = await trio.run_process(
        ["curl", "-sS", "--noproxy", "", "-w", "\n%{http_code}", "--max-time", "10", *args],
        capture_stdout=True,
        check=False,
    )
    body, _, status = result.stdout.decode().rpartition("\n")
    return int(status), body


async def test_sidecar_process_serves_through_curl_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    control = StubControlPlane(tmp_path / "control.sock")
    token = "the-mesh-token"
    write_token(tmp_path, token)
    backend = Backend("catalog")
    log_path = tmp_path / "sidecar.log"
    async with trio.open_nursery() as nursery:
        app_port = await nursery.start(backend.serve)
        control_scope = trio.CancelScope()

        async def run_control(
            *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            with control_scope:
                await control.serve(task_status=task_status)

        await nursery.start(run_control)
        control.publish(INSTANCE, config(app_port))
        with log_path.open("wb") as log_file:
            process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "meshkit.proxy",
                    "--instance",
                    INSTANCE,
                    "--control",
                    str(control.socket_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
            )
        try:
            with trio.fail_after(15):
                ports = await control.wait_ready(INSTANCE)
            assert set(ports) == {"inbound", "outbound", "admin"}

            status, body = await curl(
                "-x", f"http://127.0.0.1:{ports['outbound']}", "http://catalog/info"
            )
            assert status == 503 and "no healthy instance of service 'catalog'" in body

            itself = Endpoint(instance=INSTANCE, host="127.0.0.1", port=ports["inbound"])
            version = control.publish(INSTANCE, config(app_port, (itself,)))
            with trio.fail_after(15):
                assert await control.wait_ack(INSTANCE, version) is None

            status, body = await curl(
                "-x", f"http://127.0.0.1:{ports['outbound']}", "http://catalog/info"
            )
            assert status == 200 and '"target": "/info"' in body

            control_scope.cancel()
            await trio.sleep(0.2)
            admin = f"http://127.0.0.1:{ports['admin']}/metrics"
            status, body = await curl(admin)
            assert status == 401 and "needs the mesh's token" in body
            status, body = await curl("-H", "Authorization: Bearer wrong", admin)
            assert status == 401
            bearer = f"Authorization: Bearer {token}"
            status, body = await curl("-H", bearer, "-H", "Host: evil.example", admin)
            assert status == 403 and "Host 'evil.example' is not loopback" in body
            h2 = ("-H", bearer, "--http2-prior-knowledge")
            status, body = await curl(*h2, "-H", "Host: evil.example", admin)  # as :authority
            assert status == 403 and "Host 'evil.example'" in body
            status, body = await curl(*h2, admin.replace("127.0.0.1", "localhost"))
            assert status == 200
            status, body = await curl("-H", bearer, admin)
            assert status == 200 and 'cluster="catalog",status_class="2xx"} 1' in body

            slow_result: list[tuple[int, str]] = []

            async def slow_request() -> None:
                slow_result.append(
                    await curl(
                        "-x",
                        f"http://127.0.0.1:{ports['outbound']}",
                        "http://catalog/slow?seconds=1",
                    )
                )

            async with trio.open_nursery() as clients:
                clients.start_soon(slow_request)
                await trio.sleep(0.4)
                process.send_signal(signal.SIGTERM)
                with trio.fail_after(15):
                    exit_code = await process.wait()
            assert exit_code == 0
            assert slow_result[0][0] == 200
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        nursery.cancel_scope.cancel()
    log = log_path.read_text()
    assert "GET http://catalog/info 200 " in log
    assert "GET http://catalog/info 503 " in log and "ms UH" in log
    assert "applied config version 2" in log
    assert "serving config version 2 until it comes back" in log
