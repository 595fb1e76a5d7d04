from __future__ import annotations

import os
import stat
from pathlib import Path

import trio

from meshkit.api.control import request_json
from meshkit.dsl.spec import GatewaySpec, MeshSpec, ServiceSpec
from meshkit.registry.compile import compile_configs
from meshkit.registry.server.api import ControlServer
from meshkit.registry.state import InstanceRecord, Registry

SPEC = MeshSpec(
    name="shop",
    file="Meshfile.py",
    services=(ServiceSpec(name="frontend", command="x"),),
    gateway=GatewaySpec(port=0),
)


def make_server(downs: list[bool]) -> tuple[Registry, ControlServer]:
    registry = Registry(mesh="shop")
    registry.add(InstanceRecord(id="frontend-0", service="frontend", port=9001))
    registry.add(InstanceRecord(id="gateway", service="gateway", kind="gateway"))
    registry.publish(compile_configs(SPEC, registry).values())
    server = ControlServer(
        registry, meshfile="/src/Meshfile.py", on_down=lambda: downs.append(True), poll_timeout=20
    )
    return registry, server


async def test_long_poll_answers_at_once_when_newer(autojump_clock: trio.abc.Clock) -> None:
    _, server = make_server([])
    reply = await server.dispatch("GET", "/v1/config/frontend-0", b"")
    assert reply.status == 200
    assert reply.body["version"] == 1
    assert reply.body["config"]["instance"] == "frontend-0"


async def test_long_poll_times_out_with_204(autojump_clock: trio.abc.Clock) -> None:
    _, server = make_server([])
    start = trio.current_time()
    reply = await server.dispatch("GET", "/v1/config/frontend-0?after=1", b"")
    assert reply.status == 204
    assert 19 <= trio.current_time() - start <= 21


async def test_long_poll_wakes_on_a_new_version(autojump_clock: trio.abc.Clock) -> None:
    registry, server = make_server([])
    replies = []

    async def poll() -> None:
        replies.append(await server.dispatch("GET", "/v1/config/frontend-0?after=1", b""))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.sleep(5)
        assert replies == []
        registry.update("frontend-0", port=9100)
        registry.publish(compile_configs(SPEC, registry).values())
    [reply] = replies
    assert reply.status == 200
    assert reply.body["version"] == 2
    assert reply.body["config"]["app"]["port"] == 9100


async def test_ready_ack_and_errors() -> None:
    downs: list[bool] = []
    registry, server = make_server(downs)
    reply = await server.dispatch(
        "POST",
        "/v1/instances/gateway/ready",
        b'{"pid": 5, "ports": {"gateway": 8123, "admin": 8124}}',
    )
    assert (reply.status, reply.body) == (200, {})
    assert registry.get("gateway").sidecar_ports == {"gateway": 8123, "admin": 8124}
    reply = await server.dispatch(
        "POST", "/v1/instances/gateway/ack", b'{"version": 1, "error": "bad"}'
    )
    assert reply.status == 200
    ack = registry.ack_of("gateway")
    assert ack is not None and ack.error == "bad"
    status = await server.dispatch("GET", "/v1/status", b"")
    assert status.body["gateways"][0]["url"] == "http://127.0.0.1:8123"
    assert status.body["ready"] is False
    down = await server.dispatch("POST", "/v1/down", b"")
    assert (down.status, down.body, downs) == (202, {"stopping": True}, [True])


async def test_every_refusal_has_a_reason() -> None:
    _, server = make_server([])
    for method, target, body, expected in [
        ("GET", "/v1/config/nope", b"", 404),
        ("GET", "/v1/config/frontend-0?after=x", b"", 400),
        ("POST", "/v1/instances/frontend-0/ready", b"[]", 400),
        ("POST", "/v1/instances/frontend-0/ready", b"{bad", 400),
        ("POST", "/v1/instances/frontend-0/ack", b'{"version": "1"}', 400),
        ("GET", "/v1/down", b"", 405),
        ("GET", "/v2/status", b"", 404),
    ]:
        try:
            reply = await server.dispatch(method, target, body)
        except Exception as exc:  # the server turns these into replies
            status = getattr(exc, "status", 404)
            assert status == expected, (target, exc)
            assert str(exc)
        else:
            raise AssertionError(f"{method} {target} answered {reply}")


async def test_served_over_a_private_unix_socket(tmp_path: Path) -> None:
    registry, server = make_server([])
    socket_path = tmp_path / "run" / "control.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, socket_path)
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o700
        status, body = await request_json(socket_path, "GET", "/v1/status")
        assert status == 200
        assert body["mesh"] == "shop"
        assert body["services"][0]["instances"][0]["id"] == "frontend-0"
        status, body = await request_json(socket_path, "GET", "/v1/config/nope")
        assert status == 404
        assert "no instance called 'nope'" in body["error"]
        status, body = await request_json(
            socket_path,
            "POST",
            "/v1/instances/frontend-0/ready",
            {"pid": 3, "ports": {"inbound": 1}},
        )
        assert status == 200
        assert registry.get("frontend-0").inbound_port == 1
        nursery.cancel_scope.cancel()
    assert not socket_path.exists()


async def test_status_can_wait_for_the_mesh_to_be_ready(autojump_clock: trio.abc.Clock) -> None:
    registry, server = make_server([])
    start = trio.current_time()
    early = await server.dispatch("GET", "/v1/status?wait=ready", b"")
    assert early.status == 200 and early.body["ready"] is False
    assert trio.current_time() - start >= 1  # it waited, then answered as it was
    replies = []

    async def wait() -> None:
        replies.append(await server.dispatch("GET", "/v1/status?wait=ready", b""))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(0.5)
        registry.mark_sidecar_ready("gateway", pid=2, ports={"gateway": 8443, "admin": 1})
        registry.mark_sidecar_ready("frontend-0", pid=3, ports={"inbound": 9002})
        registry.transition("frontend-0", "starting")
        registry.transition("frontend-0", "healthy")
        woke = trio.current_time()
    [reply] = replies
    assert reply.body["ready"] is True and trio.current_time() == woke
