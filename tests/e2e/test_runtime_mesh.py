"""End to end: the control plane runs real processes (stand-in sidecars, real apps)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from meshkit.api.control import ControlPlaneError, request_json
from meshkit.dsl.convert import spec_to_json
from meshkit.dsl.spec import (
    GatewayRoute,
    GatewaySpec,
    HealthCheck,
    MeshSpec,
    RestartPolicy,
    ServiceSpec,
)
from meshkit.runtime.mesh import UpOptions, run_mesh
from meshkit.runtime.process import NoGuard, ProcessSpec, shell_argv, spawn

pytestmark = pytest.mark.e2e

# A stand-in for ``python -m meshkit.proxy``: fetch the config, bind every
# listener, report ready and ack, then idle until SIGTERM.
STANDIN_SIDECAR = textwrap.dedent(
    r"""
    import http.client, json, os, socket, sys, time

    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    instance, control = args["--instance"], args["--control"]

    class UnixConnection(http.client.HTTPConnection):
        def __init__(self, path):
            super().__init__("localhost")
            self.unix_path = path

        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(self.unix_path)

    def call(method, path, body=None):
        conn = UnixConnection(control)
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Connection": "close"})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, (json.loads(raw) if raw else None)

    status, body = call("GET", f"/v1/config/{instance}")
    sockets = {}
    for listener in body["config"]["listeners"]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", listener["port"]))
        sock.listen()
        sockets[listener["name"]] = sock
    ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
    call("POST", f"/v1/instances/{instance}/ready", {"pid": os.getpid(), "ports": ports})
    call("POST", f"/v1/instances/{instance}/ack", {"version": body["version"], "error": None})
    print(f"stand-in sidecar {instance} ready on {ports}", flush=True)
    while True:
        time.sleep(3600)
    """
)

WEB_APP = "python -m http.server $PORT --bind 127.0.0.1"


def make_spec() -> MeshSpec:
    return MeshSpec(
        name="shop",
        file="Meshfile.py",
        services=(
            ServiceSpec(
                name="web",
                command=WEB_APP,
                replicas=2,
                health=HealthCheck(kind="http", path="/", period=0.2),
            ),
            ServiceSpec(
                name="crasher",
                command="echo crashing; exit 3",
                restart_policy=RestartPolicy(backoff_initial=0.1, backoff_max=0.4),
            ),
        ),
        gateway=GatewaySpec(port=0, routes=(GatewayRoute(prefix="/", service="web"),)),
    )


def make_options(tmp_path: Path, standin: Path, *, terminal: io.StringIO | None) -> UpOptions:
    return UpOptions(
        state_dir=tmp_path / ".meshkit",
        base_dir=tmp_path,
        meshfile=str(tmp_path / "Meshfile.py"),
        grace=2.0,
        terminal=terminal,
        handle_signals=False,
        sidecar_argv=(sys.executable, str(standin)),
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def pids_in(status: dict[str, Any]) -> list[int]:
    pids = []
    for service in status["services"]:
        for instance in service["instances"]:
            pids += [p for p in (instance["pid"], instance["sidecar_pid"]) if p]
    return pids


async def status_when(socket_path: Path, predicate: Any, timeout: float = 20) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            try:
                code, body = await request_json(socket_path, "GET", "/v1/status")
            except ControlPlaneError:
                body = None
            if body is not None and code == 200 and predicate(body):
                return body  # type: ignore[no-any-return]
            await trio.sleep(0.1)


def instance(status: dict[str, Any], instance_id: str) -> dict[str, Any]:
    for service in status["services"]:
        for inst in service["instances"]:
            if inst["id"] == instance_id:
                return inst  # type: ignore[no-any-return]
    raise KeyError(instance_id)


async def test_mesh_runs_restarts_and_stops_cleanly(tmp_path: Path) -> None:
    standin = tmp_path / "standin_sidecar.py"
    standin.write_text(STANDIN_SIDECAR)
    terminal = io.StringIO()
    options = make_options(tmp_path, standin, terminal=terminal)
    socket_path = options.state_dir / "run" / "control.sock"
    results: list[int] = []

    async def up() -> None:
        results.append(await run_mesh(make_spec(), options))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(up)
        status = await status_when(
            socket_path,
            lambda s: (
                instance(s, "crasher-0")["restarts"] >= 3
                and all(instance(s, i)["state"] == "healthy" for i in ("web-0", "web-1"))
            ),
        )
        assert status["gateways"][0]["url"].startswith("http://127.0.0.1:")
        assert any("crasher-0" in error for error in status["errors"])
        web = instance(status, "web-0")
        assert web["inbound_port"] and web["outbound_port"] and web["admin_port"]
        assert stat_mode(options.state_dir / "run") == 0o700
        assert (options.state_dir / "run" / "meshkit.pid").read_text().strip() == str(os.getpid())
        pids = pids_in(status)
        code, body = await request_json(socket_path, "POST", "/v1/down")
        assert (code, body) == (202, {"stopping": True})
    assert results == [0]
    assert not socket_path.exists()
    assert not (options.state_dir / "run" / "meshkit.pid").exists()
    assert [pid for pid in pids if alive(pid)] == []
    assert "crashing" in (options.state_dir / "logs" / "crasher-0.log").read_text()
    assert "ready" in (options.state_dir / "logs" / "web-0.proxy.log").read_text()
    assert " crasher-0 | crashing" in terminal.getvalue()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


HOST_SCRIPT = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from meshkit.dsl.convert import spec_from_json
    from meshkit.runtime.mesh import UpOptions, run_mesh

    tmp, standin, grace = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    spec = spec_from_json((tmp / "spec.json").read_text())
    options = UpOptions(
        state_dir=tmp / ".meshkit", base_dir=tmp, meshfile="Meshfile.py",
        sidecar_argv=(sys.executable, standin), grace=grace,
    )
    sys.exit(trio.run(run_mesh, spec, options))
    """
)


async def test_killing_the_control_plane_leaves_no_process(tmp_path: Path) -> None:
    standin = tmp_path / "standin_sidecar.py"
    standin.write_text(STANDIN_SIDECAR)
    spec = MeshSpec(
        name="orphans",
        file="Meshfile.py",
        services=(ServiceSpec(name="sleeper", command="sleep 300 & sleep 300", replicas=2),),
    )
    (tmp_path / "spec.json").write_text(spec_to_json(spec))
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(tmp_path), str(standin), "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        socket_path = tmp_path / ".meshkit" / "run" / "control.sock"
        status = await status_when(
            socket_path,
            lambda s: all(inst["pid"] for svc in s["services"] for inst in svc["instances"]),
        )
        pids = pids_in(status)
        pids += [child for pid in pids for child in children_of(pid)]
        assert len(pids) >= 5
        host.send_signal(signal.SIGKILL)
        host.wait()
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            await trio.sleep(0.1)
        assert [pid for pid in pids if alive(pid)] == []
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except FileNotFoundError:
        return []


async def test_stop_escalates_to_sigkill_after_the_grace_period() -> None:
    async with trio.open_nursery() as nursery:
        lines: list[str] = []
        stubborn = await spawn(
            ProcessSpec(
                name="stubborn", argv=shell_argv("trap '' TERM; echo started; sleep 30; :")
            ),
            guard=NoGuard(),
            on_line=lines.append,
            nursery=nursery,
        )
        await wait_for_line(lines, "started")
        began = trio.current_time()
        code = await stubborn.stop(grace=0.5)
        elapsed = trio.current_time() - began
        assert code == -signal.SIGKILL
        assert 0.4 <= elapsed < 3
        assert not alive(stubborn.pid)

        polite = await spawn(
            ProcessSpec(name="polite", argv=shell_argv("echo started; exec sleep 30")),
            guard=NoGuard(),
            on_line=lines.append,
            nursery=nursery,
        )
        began = trio.current_time()
        assert await polite.stop(grace=10) == -signal.SIGTERM
        assert trio.current_time() - began < 2


async def wait_for_line(lines: list[str], text: str) -> None:
    with trio.fail_after(5):
        while text not in lines:
            await trio.sleep(0.02)


async def test_second_ctrl_c_kills_at_once_and_exits_130(tmp_path: Path) -> None:
    standin = tmp_path / "standin_sidecar.py"
    standin.write_text(STANDIN_SIDECAR)
    spec = MeshSpec(
        name="stubborn",
        file="Meshfile.py",
        services=(ServiceSpec(name="deaf", command="trap '' TERM; sleep 300; :"),),
    )
    (tmp_path / "spec.json").write_text(spec_to_json(spec))
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(tmp_path), str(standin), "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        socket_path = tmp_path / ".meshkit" / "run" / "control.sock"
        status = await status_when(socket_path, lambda s: instance(s, "deaf-0")["pid"])
        pids = pids_in(status)
        host.send_signal(signal.SIGINT)
        await trio.sleep(0.5)
        assert host.poll() is None, "the deaf app should hold the first Ctrl-C for its grace"
        began = time.monotonic()
        host.send_signal(signal.SIGINT)
        code = await trio.to_thread.run_sync(host.wait, 10)
        assert code == 130
        assert time.monotonic() - began < 5
        assert [pid for pid in pids if alive(pid)] == []
        assert not socket_path.exists()
        assert host.stdout is not None
        output = host.stdout.read().decode()
        assert "second Ctrl-C" in output
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        if host.stdout is not None:
            host.stdout.close()
