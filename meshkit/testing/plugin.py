"""The pytest plugin (entry point ``pytest11``: ``meshkit``): the ``mesh`` fixture and friends.

Configuration:

* ini ``meshkit_file``: the Meshfile of the ``mesh`` fixture, relative to the rootdir;
* ``@pytest.mark.meshfile("path", services=[...])`` on a module
  (``pytestmark = ...``): that module gets its own mesh of that Meshfile (only
  those services and what they depend on), stopped after its last test;
* ini ``meshkit_scope``: ``session`` (default: one mesh shared by every test
  module without a marker) or ``module``;
* ini ``meshkit_ready_timeout`` (seconds, default 60) and ``meshkit_log_lines``
  (default 40: how much of each log a failure report or error shows);
* ``--meshkit-keep``: leave the meshes running after the session and say how
  to reach and stop them.

Fixtures: ``mesh`` (a ``MeshHandle``, module scope: usable from function,
class and module fixtures) and ``mesh_factory`` (a ``MeshFactory`` for
meshes of one test, e.g. of a Meshfile written by the test).  When a test
that used either fails, the tail of every instance's log is attached to its
report as a ``meshkit <instance> log`` section.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from meshkit.testing.handle import MeshHandle
from meshkit.testing.launch import LaunchOptions, MeshStartError, sweep_dead_runs
from meshkit.testing.session import MeshFactory, MeshPool, start_mesh

POOL_KEY = pytest.StashKey[MeshPool]()
SCOPES = ("session", "module")
MARKER_HELP = (
    "meshfile(path, services=None): the Meshfile (relative to the rootdir) whose mesh the "
    "`mesh` fixture of this module runs, optionally only some services"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("meshkit", "meshkit service mesh")
    group.addoption(
        "--meshkit-keep",
        action="store_true",
        default=False,
        help="leave the meshes running after the session (prints how to reach and stop them)",
    )
    parser.addini("meshkit_file", "Meshfile of the `mesh` fixture, relative to the rootdir")
    parser.addini("meshkit_scope", "lifetime of the `mesh` fixture: session or module", default="session")
    parser.addini("meshkit_ready_timeout", "seconds a mesh may take to become healthy", default="60")
    parser.addini("meshkit_log_lines", "log lines shown per instance in reports", default="40")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    sweep_dead_runs()


def _launch_options(config: pytest.Config) -> LaunchOptions:
    try:
        ready_timeout = float(config.getini("meshkit_ready_timeout"))
        log_lines = int(config.getini("meshkit_log_lines"))
    except ValueError as exc:
        raise pytest.UsageError(f"meshkit: bad ini value: {exc}") from None
    return LaunchOptions(
        ready_timeout=ready_timeout,
        log_lines=log_lines,
        keep=bool(config.getoption("meshkit_keep")),
    )


def _scope(config: pytest.Config) -> str:
    scope = str(config.getini("meshkit_scope")).strip() or "session"
    if scope not in SCOPES:
        raise pytest.UsageError(
            f"meshkit: meshkit_scope = {scope!r}; it must be one of {', '.join(SCOPES)}"
        )
    return scope


def _default_meshfile(config: pytest.Config) -> Path:
    configured = str(config.getini("meshkit_file")).strip()
    if not configured:
        pytest.fail(
            "meshkit: the `mesh` fixture needs a Meshfile: set `meshkit_file` in the pytest "
            'configuration or mark the module with pytest.mark.meshfile("path/to/Meshfile.py")',
            pytrace=False,
        )
    return Path(config.rootpath) / configured


@pytest.fixture(scope="session")
def meshkit_pool(pytestconfig: pytest.Config) -> Iterator[MeshPool]:
    """The session's meshes; stops them at the end of the session."""
    pool = MeshPool(_launch_options(pytestconfig))
    pytestconfig.stash[POOL_KEY] = pool
    try:
        yield pool
    finally:
        pool.close()


def _start_or_fail(start: Callable[[], MeshHandle]) -> MeshHandle:
    try:
        return start()
    except MeshStartError as exc:
        pytest.fail(f"meshkit: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def mesh(request: pytest.FixtureRequest, meshkit_pool: MeshPool) -> Iterator[MeshHandle]:
    """A running, healthy mesh (see the module docstring for which one and for how long)."""
    config = request.config
    marker = request.node.get_closest_marker("meshfile")
    if marker is not None:
        if not marker.args:
            pytest.fail('meshkit: use pytest.mark.meshfile("path/to/Meshfile.py")', pytrace=False)
        meshfile = Path(config.rootpath) / str(marker.args[0])
        services = tuple(marker.kwargs.get("services") or ())
    else:
        meshfile, services = _default_meshfile(config), ()
    if marker is None and _scope(config) == "session":
        yield _start_or_fail(lambda: meshkit_pool.shared(meshfile, services))
        return
    handle = _start_or_fail(lambda: start_mesh(meshfile, services, options=meshkit_pool.options))
    try:
        yield handle
    finally:
        meshkit_pool.release(handle)


@pytest.fixture
def mesh_factory(pytestconfig: pytest.Config, meshkit_pool: MeshPool) -> Iterator[MeshFactory]:
    """Start meshes inside a test: ``mesh_factory.start(path, services=...)``; stopped after it."""
    factory = MeshFactory(meshkit_pool, rootdir=Path(pytestconfig.rootpath))
    try:
        yield factory
    finally:
        factory.close()


def _meshes_of(item: pytest.Item) -> list[MeshHandle]:
    funcargs = getattr(item, "funcargs", {})
    found = [value for value in funcargs.values() if isinstance(value, MeshHandle)]
    for value in funcargs.values():
        if isinstance(value, MeshFactory):
            found.extend(value.started)
    return list({id(handle): handle for handle in found}.values())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        lines = int(item.config.getini("meshkit_log_lines"))
        for handle in _meshes_of(item):
            if not handle.process.running():
                report.sections.append(
                    ("meshkit up output", handle.process.output_tail(lines) or "(empty)")
                )
                continue
            for instance_id, text in handle.log_tails(lines).items():
                report.sections.append((f"meshkit {instance_id} log", text or "(empty)"))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    pool = terminalreporter.config.stash.get(POOL_KEY, None)
    if pool is None or not pool.kept:
        return
    terminalreporter.section("meshkit: meshes left running (--meshkit-keep)")
    for handle in pool.kept:
        try:
            where = handle.gateway_url()
        except Exception:
            where = "no gateway"
        terminalreporter.write_line(
            f"{handle.meshfile} (meshkit up pid {handle.process.pid}; {where}); "
            f"stop it with: cd {handle.workdir} && {_meshkit_command(handle.process.options.python)} down"
        )


def _meshkit_command(python: str) -> str:
    """The full path of the ``meshkit`` beside ``python`` (a venv's), else ``python -m meshkit``."""
    beside = Path(python).parent / "meshkit"
    if os.access(beside, os.X_OK):
        return os.fspath(beside)
    return f"{python} -m meshkit"
