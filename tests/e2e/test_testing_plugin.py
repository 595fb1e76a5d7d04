"""The pytest plugin, run as real inner pytest processes (pytester) against the example shop.

Every inner run carries a unique ``MESHKIT_TEST_MARK`` in its environment; the
meshes it starts inherit it, so ``/proc`` tells whether anything survived.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from meshkit.cli.up import override_gateway_ports
from meshkit.dsl.spec import GatewayRoute, GatewaySpec, MeshSpec, ServiceSpec
from meshkit.runtime.ingress import INGRESS_SERVICE, IngressError, with_test_ingress
from meshkit.runtime.reload import SpecTransformError
from meshkit.testing.launch import LaunchOptions, up_argv
from meshkit.testing.status import describe_unhealthy, ingress_port, is_healthy, pick_instance
from tests.meshproc import REPO, marked_pids

pytest_plugins = ["pytester"]

SHOP_DIR = REPO / "examples" / "shop"
EXAMPLE_TESTS = REPO / "examples" / "shop" / "tests" / "test_shop_mesh.py"
EXAMPLE_FAULT_TESTS = REPO / "examples" / "shop" / "tests" / "test_shop_faults.py"
INI = f"""
[pytest]
meshkit_file = {REPO / "meshfile.example.py"}
trio_mode = true
filterwarnings = error
"""


@pytest.fixture
def mark(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A unique mark for the inner run; afterwards, no process may carry it."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("MESHKIT_TEST_MARK", value)
    monkeypatch.setenv("NO_COLOR", "1")
    yield value
    deadline = time.monotonic() + 10
    while marked_pids(value) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = marked_pids(value)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "processes of the inner run survived it"


def inner_args(*extra: str) -> list[str]:
    return ["-p", "no:cacheprovider", "-p", "no:randomly", *extra]


@pytest.mark.e2e
def test_example_suite_passes(pytester: pytest.Pytester, mark: str) -> None:
    result = pytester.runpytest_subprocess(*inner_args(str(EXAMPLE_TESTS), "-v"))
    result.assert_outcomes(passed=4)


@pytest.mark.e2e
def test_example_suite_passes_under_xdist(pytester: pytest.Pytester, mark: str) -> None:
    result = pytester.runpytest_subprocess(*inner_args(str(EXAMPLE_TESTS), "-n", "2"))
    result.assert_outcomes(passed=4)


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_example_fault_and_call_suite_passes(
    pytester: pytest.Pytester, mark: str, workers: tuple[str, ...]
) -> None:
    result = pytester.runpytest_subprocess(*inner_args(str(EXAMPLE_FAULT_TESTS), *workers))
    result.assert_outcomes(passed=5)


@pytest.mark.e2e
def test_failure_reports_and_async_operations(pytester: pytest.Pytester, mark: str) -> None:
    """One inner session: a pytest-trio test and a failing sync test share the session's
    mesh; a third test starts a Meshfile it writes itself with ``mesh_factory``."""
    pytester.makeini(INI)
    pytester.makepyfile(
        test_async="""
        import trio

        async def fetch(addr, path):
            host, port = addr.split(":")
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                request = f"GET {path} HTTP/1.1\\r\\nhost: {addr}\\r\\nconnection: close\\r\\n\\r\\n"
                await stream.send_all(request.encode())
                data = b""
                while chunk := await stream.receive_some(65536):
                    data += chunk
            return data

        async def test_kill_and_wait_without_blocking(mesh):
            ticks = 0

            async def tick():
                nonlocal ticks
                while True:
                    await trio.sleep(0.01)
                    ticks += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(tick)
                killed = await mesh.aio.kill("reviews")
                status = await mesh.aio.wait_healthy("reviews", timeout=30)
                nursery.cancel_scope.cancel()
            assert ticks > 5, "the event loop was blocked"
            reviews = [s for s in status["services"] if s["name"] == "reviews"][0]
            assert reviews["instances"][0]["pid"] != killed
            reply = await fetch(await mesh.aio.addr("reviews"), "/reviews")
            assert reply.startswith(b"HTTP/1.1 200")
            assert "/reviews" in await mesh.aio.logs("reviews")
            async with mesh.aio.fault("reviews", abort=503):
                reply = await fetch(await mesh.aio.addr("reviews"), "/reviews")
                assert reply.startswith(b"HTTP/1.1 503")
            fault = await mesh.aio.fault("reviews", delay="10ms")
            await fault.clear()
            async with mesh.aio.limit("reviews", "1/h"):
                await fetch(await mesh.aio.addr("reviews"), "/reviews")
                reply = await fetch(await mesh.aio.addr("reviews"), "/reviews")
                assert reply.startswith(b"HTTP/1.1 429")
            reply = await fetch(await mesh.aio.addr("reviews"), "/reviews")
            assert reply.startswith(b"HTTP/1.1 200")
            calls = await mesh.aio.calls("reviews")
            assert [call.status for call in calls][-1:] == [200]
        """,
        test_factory=f"""
        import urllib.request

        def test_a_meshfile_written_by_the_test(mesh_factory, tmp_path):
            path = tmp_path / "Meshfile.py"
            path.write_text(
                "from meshkit import Mesh\\n"
                "mesh = Mesh('tiny')\\n"
                "mesh.service('reviews', run='python reviews.py', cwd={str(SHOP_DIR)!r})\\n"
            )
            tiny = mesh_factory.start(path)
            assert tiny.services() == ["reviews"]
            with urllib.request.urlopen(tiny.url("reviews") + "/reviews", timeout=10) as r:
                assert r.status == 200
        """,
        test_fails="""
        import urllib.request

        def test_fails(mesh):
            with urllib.request.urlopen(mesh.url("reviews") + "/reviews", timeout=10) as r:
                assert r.status == 200
            assert False, "on purpose"
        """,
    )
    result = pytester.runpytest_subprocess(*inner_args("-p", "no:xdist"))
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_fails.py:6: AssertionError",
            "*- meshkit catalog-v2-0 log -*",
            "*- meshkit reviews-0 log -*",
            "GET /reviews -> 200",
            "*- meshkit frontend-0 log -*",
        ]
    )
    assert "meshkit meshkit-ingress-0 log" not in result.stdout.str()


@pytest.mark.e2e
def test_a_test_shows_that_reviews_cannot_call_catalog(
    pytester: pytest.Pytester, mark: str
) -> None:
    """Policy asserted through the real plugin: ``mesh.proxy_url`` calls *as* a service."""
    echo = f"{sys.executable} {REPO / 'tests' / 'e2e' / 'apps' / 'reload_echo.py'}"
    pytester.makefile(
        ".py",
        Meshfile=f"""
        from meshkit import Mesh, http_get

        mesh = Mesh("policed", authorization="upstreams")
        mesh.service("catalog", run="{echo}", health=http_get("/healthz", period="100ms"))
        mesh.service("reviews", run="{echo}", health=http_get("/healthz", period="100ms"))
        mesh.service("frontend", run="{echo}", health=http_get("/healthz", period="100ms"),
                     upstreams=["catalog", "reviews"])
        """,
    )
    pytester.makeini(f"[pytest]\nmeshkit_file = {pytester.path / 'Meshfile.py'}\n")
    pytester.makepyfile(
        test_policy="""
        import urllib.error
        import urllib.request

        import pytest

        def call_as(mesh, caller, url):
            proxy = urllib.request.ProxyHandler({"http": mesh.proxy_url(caller)})
            return urllib.request.build_opener(proxy).open(url, timeout=10)

        def test_reviews_cannot_call_catalog(mesh):
            with pytest.raises(urllib.error.HTTPError) as refused:
                call_as(mesh, "reviews", "http://catalog/items")
            assert refused.value.code == 403
            assert refused.value.headers["x-meshkit-flag"] == "RBAC"
            assert [(c.caller, c.status, c.flag) for c in mesh.calls("catalog")] == [
                ("reviews", 403, "RBAC")
            ]

        def test_frontend_may(mesh):
            with call_as(mesh, "frontend", "http://catalog/items") as answer:
                assert answer.status == 200
        """
    )
    result = pytester.runpytest_subprocess(*inner_args("-p", "no:xdist"))
    result.assert_outcomes(passed=2)


@pytest.mark.e2e
def test_a_broken_meshfile_is_an_error_naming_its_line(
    pytester: pytest.Pytester, mark: str
) -> None:
    pytester.makepyfile(
        Meshfile="""
        from meshkit import Mesh
        mesh = Mesh("broken")
        mesh.service("api", run="true", upstreams=["nowhere"])
        """,
        test_broken="""
        import pytest
        pytestmark = pytest.mark.meshfile("Meshfile.py")

        def test_uses_it(mesh):
            pass
        """,
    )
    result = pytester.runpytest_subprocess(*inner_args())
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*Meshfile.py:*nowhere*"])


@pytest.mark.e2e
def test_a_sigkilled_pytest_leaves_no_process_behind(pytester: pytest.Pytester, mark: str) -> None:
    pytester.makeini(INI)
    ready = pytester.path / "ready"
    pytester.makepyfile(
        test_hang=f"""
        import pathlib, time

        def test_hangs(mesh):
            pathlib.Path({str(ready)!r}).write_text(str(mesh.workdir))
            time.sleep(60)
        """
    )
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", *inner_args("-q")],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            assert inner.poll() is None, "the inner pytest ended before its mesh was up"
            time.sleep(0.1)
        assert ready.exists(), "the inner mesh never became ready"
        assert len(marked_pids(mark)) > 5, "the mesh's processes should be running"
        inner.send_signal(signal.SIGKILL)
        inner.wait()
        # A SIGKILLed pytest cannot tidy up its mesh's state directory.
        shutil.rmtree(ready.read_text(), ignore_errors=True)
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()
    # The `mark` fixture proves that every process of the mesh goes away.


@pytest.mark.e2e
def test_meshkit_keep_leaves_the_mesh_running_and_says_how_to_stop_it(
    pytester: pytest.Pytester, mark: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_keep="""
        def test_uses_it(mesh):
            assert mesh.url("frontend").startswith("http://127.0.0.1:")
        """
    )
    result = pytester.runpytest_subprocess(*inner_args("--meshkit-keep"))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*meshes left running*", "*stop it with: cd * && */meshkit down"])
    line = next(line for line in result.stdout.lines if "stop it with: cd " in line)
    workdir = Path(line.split("stop it with: cd ", 1)[1].split(" && ", 1)[0])
    # The hint names the venv's meshkit by its full path: it works outside the venv too.
    meshkit_command = line.split(" && ", 1)[1].removesuffix(" down")
    assert Path(meshkit_command).is_absolute() and os.access(meshkit_command, os.X_OK)
    assert marked_pids(mark), "the kept mesh should still be running"
    down = subprocess.run(
        [meshkit_command, "down", "--grace", "3"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert down.returncode == 0, down.stderr
    shutil.rmtree(workdir, ignore_errors=True)


# --- the pure parts, without processes --------------------------------------

SHOP = MeshSpec(
    name="shop",
    file="Meshfile.py",
    services=(
        ServiceSpec(name="catalog", command="c", replicas=2),
        ServiceSpec(name="frontend", command="f", upstreams=("catalog",)),
    ),
    gateway=GatewaySpec(
        port=8080, tls_port=8443, routes=(GatewayRoute(prefix="/", service="frontend"),)
    ),
)


def _instance(instance_id: str, state: str = "healthy", **extra: object) -> dict[str, object]:
    return {"id": instance_id, "state": state, "pid": 10, **extra}


STATUS = {
    "ready": False,
    "gateways": [{"url": "http://127.0.0.1:1234"}],
    "services": [
        {
            "name": "catalog",
            "instances": [_instance("catalog-0"), _instance("catalog-1", "crashed")],
        },
        {
            "name": INGRESS_SERVICE,
            "instances": [_instance("meshkit-ingress-0", upstream_ports={"catalog": 4321})],
        },
    ],
    "errors": ["catalog-1: exited with status 3"],
}


def test_gateway_ports_are_overridden_and_a_tls_port_is_added() -> None:
    spec = override_gateway_ports(SHOP, port=0, tls_port=0)
    assert spec.gateway is not None and (spec.gateway.port, spec.gateway.tls_port) == (0, 0)
    assert SHOP.gateway is not None
    plain = attrs.evolve(SHOP, gateway=attrs.evolve(SHOP.gateway, tls_port=None))
    assert override_gateway_ports(plain, port=0, tls_port=None).gateway == attrs.evolve(
        plain.gateway, port=0
    )
    overridden = override_gateway_ports(plain, port=None, tls_port=0).gateway
    assert overridden is not None and overridden.tls_port == 0
    no_gateway = attrs.evolve(SHOP, gateway=None)
    assert override_gateway_ports(no_gateway, port=None, tls_port=None) is no_gateway
    with pytest.raises(SpecTransformError, match=r"--gateway-tls-port was given but .* no gateway"):
        override_gateway_ports(no_gateway, port=None, tls_port=0)


def test_the_ingress_is_upstream_of_every_service_and_its_name_is_reserved() -> None:
    spec = with_test_ingress(SHOP, python="/py")
    ingress = spec.services[-1]
    assert (ingress.name, ingress.upstreams) == (INGRESS_SERVICE, ("catalog", "frontend"))
    assert ingress.command == "/py -m meshkit.runtime.ingress_app"
    with pytest.raises(IngressError, match="rename that service"):
        with_test_ingress(spec)


def test_up_argv_holds_the_lifeline_unless_the_mesh_is_kept() -> None:
    argv = up_argv(Path("/m.py"), ("catalog",), LaunchOptions(python="/py"))
    assert argv[:7] == ["/py", "-m", "meshkit.cli", "up", "-f", "/m.py", "catalog"]
    assert "--exit-with-parent" in argv and "--ingress" in argv
    assert "--exit-with-parent" not in up_argv(Path("/m.py"), (), LaunchOptions(keep=True))


def test_up_argv_asks_for_the_gateway_ports_the_meshfile_declares() -> None:
    assert SHOP.gateway is not None and SHOP.gateway.tls_port is not None
    plain = attrs.evolve(SHOP.gateway, tls_port=None)

    def ports(gateway: GatewaySpec | None) -> list[str]:
        argv = up_argv(Path("/m.py"), (), LaunchOptions(), gateway=gateway)
        return [arg for arg in argv if arg.startswith("--gateway")]

    assert ports(SHOP.gateway) == ["--gateway-port", "--gateway-tls-port"]
    assert ports(plain) == ["--gateway-port"]
    assert ports(None) == []


def test_status_lookups_say_what_exists() -> None:
    assert pick_instance(STATUS, "catalog", 1)["id"] == "catalog-1"
    assert pick_instance(STATUS, "catalog", "catalog-0")["id"] == "catalog-0"
    with pytest.raises(KeyError, match="its instances: catalog-0, catalog-1"):
        pick_instance(STATUS, "catalog", 5)
    with pytest.raises(KeyError, match=r"no service 'reviews' \(its services: catalog\)"):
        pick_instance(STATUS, "reviews", 0)
    assert ingress_port(STATUS, "catalog") == 4321
    assert not is_healthy(STATUS, "catalog") and not is_healthy(STATUS, None)


def test_an_unhealthy_report_names_the_instance_and_shows_its_log(tmp_path: Path) -> None:
    (tmp_path / "catalog-1.log").write_text("starting\nTraceback: boom\n")
    report = describe_unhealthy(STATUS, None, logs_dir=tmp_path, lines=1)
    assert "catalog-1 is crashed" in report
    assert "Traceback: boom" in report and "starting" not in report
    assert "catalog-1: exited with status 3" in report


def _owner_of(run_dir: Path) -> str:
    try:
        return (run_dir / "owner.pid").read_text().strip()
    except OSError:
        return ""


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_a_killed_run_leaves_its_directory_and_the_next_run_removes_it(
    pytester: pytest.Pytester, mark: str, signum: int, tmp_path: Path
) -> None:
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("meshkit-test-*"))
    pytester.makeini(INI)
    pytester.makepyfile(
        test_hang="""
        import time

        def test_waits(mesh):
            print("MESH-UP", flush=True)
            time.sleep(600)
        """
    )
    inner = pytester.popen(
        [sys.executable, "-m", "pytest", *inner_args("-s", "test_hang.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert inner.stdout is not None
        for raw in inner.stdout:
            if b"MESH-UP" in raw:
                break
        mine = set(Path(tempfile.gettempdir()).glob("meshkit-test-*")) - before
        # Other test workers' runs come and go in the same temporary directory.
        [left] = [d for d in mine if _owner_of(d) == str(inner.pid)]
        inner.send_signal(signum)
        inner.wait(30)
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()
        if inner.stdout is not None:
            inner.stdout.close()
    assert left.is_dir(), "the killed run's directory should still be there"
    assert list(left.rglob("*key*")), "the CA root key is what must not stay forever"
    deadline = time.monotonic() + 20
    while marked_pids(mark) and time.monotonic() < deadline:
        time.sleep(0.1)  # the mesh follows its dead run (its stdin closed)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    later = pytester.runpytest_subprocess(*inner_args("test_nothing.py"))
    later.assert_outcomes(passed=1)
    assert not left.exists(), "the next run should have removed the dead run's directory"
