"""The Meshfile's evaluator forked from the sidecar template behaves as a spawned one.

A real template (``meshkit.proxy.template``) started by this test process,
which becomes a child subreaper as ``meshkit up`` does, so that the forks are
its children; and a real ``meshkit up`` killed while its evaluator hangs.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from meshkit.api.template import Child
from meshkit.dsl.evaluate.evaluation import EvalResult, evaluate_async
from meshkit.dsl.evaluate.warm import WarmEvaluator
from meshkit.runtime.lineage import OWNER_ENV, PR_SET_CHILD_SUBREAPER, Owners, become_subreaper
from meshkit.runtime.process import NoGuard
from meshkit.runtime.template import SidecarTemplate
from meshkit.runtime.template_start import start_template
from tests.meshproc import MeshProcess

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent / "apps" / "identity_echo.py"

HEADER = "from meshkit import Mesh\nmesh = Mesh('shop')\n"
# What a Meshfile can see of the process it runs in, printed (to stderr) as JSON.
LOOK_AROUND = """
import json, os, signal, sys
import sizes
mesh.service('a', run='x', replicas=int(os.environ['SHOP_REPLICAS']) + sizes.EXTRA)
print(json.dumps({
    "path": sys.path,
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "leader": os.getsid(0) == os.getpid() == os.getpgid(0),
    "signals": [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM,
                                                   signal.SIGHUP, signal.SIGPIPE)],
    "stdin": sys.stdin.read(),
    "cmdline": open('/proc/self/cmdline').read(),
}))
"""


class Recording:
    """The template as the evaluator's forker, noting whether it forked."""

    def __init__(self, template: SidecarTemplate) -> None:
        self.template = template
        self.forked: list[int] = []

    async def fork_evaluator(
        self, meshfile: str, *, env: dict[str, str], stdio: tuple[int, int, int]
    ) -> Child | None:
        child = await self.template.fork_evaluator(meshfile, env=env, stdio=stdio)
        if child is not None:
            self.forked.append(child.pid)
        return child


@asynccontextmanager
async def template() -> AsyncIterator[Recording]:
    assert become_subreaper()
    started = start_template(Owners())
    assert started is not None
    said: list[str] = []
    served = await SidecarTemplate.adopt(started, guard=NoGuard(), say=said.append)
    try:
        yield Recording(served)
    finally:
        await served.close(grace=5)
        no_longer_subreaper()
    assert not said, said


def no_longer_subreaper() -> None:
    """Leave the rest of this test process's tests as they were."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) == 0


def printed(result: EvalResult) -> dict[str, Any]:
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    document: dict[str, Any] = json.loads(lines[-1])
    return document


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


async def test_a_forked_evaluator_sees_what_a_spawned_one_sees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meshfile = tmp_path / "Meshfile.py"
    (tmp_path / "sizes.py").write_text("EXTRA = 1\n")
    meshfile.write_text(HEADER + LOOK_AROUND)
    monkeypatch.setenv("SHOP_REPLICAS", "2")
    async with template() as forker:
        async with WarmEvaluator(str(meshfile), forker=forker) as evaluate:
            forked = await evaluate(str(meshfile))
        assert len(forker.forked) == 1
    spawned = await evaluate_async(str(meshfile))
    assert forked.ok, forked.problems
    assert forked.spec is not None and forked.spec.services[0].replicas == 3
    assert (forked.spec, forked.problems, forked.files) == (
        spawned.spec,
        spawned.problems,
        spawned.files,
    )
    seen, expected = printed(forked), printed(spawned)
    assert "meshkit.proxy.template" in seen.pop("cmdline")
    assert "meshkit.dsl.evaluate.child" in expected.pop("cmdline")
    assert seen["env"].pop(OWNER_ENV).startswith(forker.template.owners.prefix)
    assert seen == expected
    assert seen["path"][1] == seen["cwd"] == os.path.dirname(meshfile)  # -m's cwd, first
    assert seen["leader"] and seen["stdin"] == ""


async def test_a_forked_evaluator_reports_a_meshfile_error_at_its_line(tmp_path: Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(HEADER + "raise ValueError('no shop today')\n")
    async with template() as forker, WarmEvaluator(str(meshfile), forker=forker) as evaluate:
        result = await evaluate(str(meshfile))
        assert forker.forked
    assert not result.ok
    problem = str(result.problems[0])
    assert ":3:" in problem and "no shop today" in problem, result.problems


async def test_a_hanging_meshfile_is_stopped_with_everything_it_started(tmp_path: Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    pids = tmp_path / "pids"
    meshfile.write_text(
        HEADER
        + textwrap.dedent(f"""
            import os, subprocess, time
            helper = subprocess.Popen(["sleep", "600"])
            daemon = subprocess.Popen(["sleep", "600"], start_new_session=True)
            with open({str(pids)!r}, "w") as out:
                out.write(f"{{os.getpid()}} {{helper.pid}} {{daemon.pid}}")
            time.sleep(600)
        """)
    )
    async with template() as forker:
        async with WarmEvaluator(str(meshfile), forker=forker, timeout=3) as evaluate:
            result = await evaluate(str(meshfile))
        assert forker.forked
    assert not result.ok and "longer than 3s" in str(result.problems[0]), result.problems
    started = [int(pid) for pid in pids.read_text().split()]
    assert started[0] == forker.forked[0]
    assert [pid for pid in started if not gone(pid)] == []
    for pid in started[1:]:  # the orphans this process adopted as a subreaper
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_an_evaluator_hanging_in_a_reload_dies_with_a_killed_control_plane(
    tmp_path: Path,
) -> None:
    meshfile = tmp_path / "Meshfile.py"
    pidfile = tmp_path / "evaluator.pid"
    meshfile.write_text(HEADER + f"mesh.service('a', run={f'python {APP}'!r})\n")
    mesh = MeshProcess(meshfile, tmp_path, "--no-watch")
    try:
        mesh.wait_ready(timeout=90)
        meshfile.write_text(
            HEADER
            + f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
            + "time.sleep(600)\n"
        )
        threading.Thread(target=_post_reload, args=(mesh,), daemon=True).start()
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        evaluator = int(pidfile.read_text())
        cmdline = Path(f"/proc/{evaluator}/cmdline").read_bytes()
        assert b"meshkit.proxy.template" in cmdline  # forked, not spawned
        mesh.proc.send_signal(signal.SIGKILL)
        mesh.proc.wait()
        mesh.wait_no_processes(timeout=10)
        assert gone(evaluator)
    finally:
        mesh.kill_everything()


def _post_reload(mesh: MeshProcess) -> None:
    """Ask for a reload; its answer never comes (the Meshfile hangs, then meshkit up dies)."""
    with suppress(OSError, http.client.HTTPException):
        mesh.api("POST", "/v1/reload")
