"""Who owns which mesh: ``start_mesh``, the session's ``MeshPool`` and ``MeshFactory``.

A mesh is started by ``start_mesh`` and stopped by whoever asked for it: the
pool (meshes shared by a session or a module) or a factory (meshes of one
test).  With ``keep`` they are let go instead, still running, and listed so
that the plugin can say how to reach and stop them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from meshkit.dsl.evaluate.evaluation import evaluate
from meshkit.testing.handle import MeshHandle
from meshkit.testing.launch import LaunchOptions, MeshProcess, MeshStartError


def start_mesh(
    meshfile: Path, services: Sequence[str] = (), *, options: LaunchOptions
) -> MeshHandle:
    """Evaluate ``meshfile``, start it with ``meshkit up`` and wait until it is healthy.

    A Meshfile with problems raises ``MeshStartError`` listing them (file:line)
    before anything starts; so does a mesh that fails to become healthy, after
    it has been stopped.
    """
    meshfile = meshfile.resolve()
    result = evaluate(meshfile)
    if not result.ok or result.spec is None:
        problems = "\n".join(str(problem) for problem in result.problems)
        raise MeshStartError(f"{meshfile} has problems; no mesh was started:\n{problems}")
    gateway = result.spec.gateway
    routes = {} if gateway is None else {route.service: route.prefix for route in gateway.routes}
    process = MeshProcess(
        meshfile=meshfile, services=tuple(services), options=options, gateway=gateway
    )
    try:
        process.wait_ready()
    except BaseException:
        process.stop()
        raise
    return MeshHandle(process, gateway_routes=routes)


def _release(handle: MeshHandle, kept: list[MeshHandle]) -> None:
    process = handle.process
    if process.options.keep and process.running():
        process.leave_running()
        kept.append(handle)
    else:
        process.stop()


class MeshPool:
    """Meshes shared by the tests of a session, one per (Meshfile, services)."""

    def __init__(self, options: LaunchOptions) -> None:
        self.options = options
        self.kept: list[MeshHandle] = []
        self._shared: dict[tuple[Path, tuple[str, ...]], MeshHandle] = {}

    def shared(self, meshfile: Path, services: Sequence[str] = ()) -> MeshHandle:
        """The session's mesh of ``meshfile``, started on first use."""
        key = (meshfile.resolve(), tuple(services))
        handle = self._shared.get(key)
        if handle is None:
            handle = start_mesh(meshfile, services, options=self.options)
            self._shared[key] = handle
        return handle

    def release(self, handle: MeshHandle) -> None:
        """Stop (or, with keep, let go of) a mesh that is not in the shared set."""
        _release(handle, self.kept)

    def close(self) -> None:
        """Stop every shared mesh."""
        handles, self._shared = list(self._shared.values()), {}
        for handle in handles:
            _release(handle, self.kept)


class MeshFactory:
    """Starts meshes for one test (``mesh_factory`` fixture); each is stopped after it."""

    def __init__(self, pool: MeshPool, *, rootdir: Path) -> None:
        self._pool = pool
        self._rootdir = rootdir
        self.started: list[MeshHandle] = []

    def start(
        self,
        meshfile: str | Path,
        services: Sequence[str] = (),
        *,
        ready_timeout: float | None = None,
    ) -> MeshHandle:
        """Start ``meshfile`` (relative paths are from the rootdir), healthy when returned."""
        path = Path(meshfile)
        if not path.is_absolute():
            path = self._rootdir / path
        options = self._pool.options
        if ready_timeout is not None:
            options = attrs.evolve(options, ready_timeout=ready_timeout)
        handle = start_mesh(path, services, options=options)
        self.started.append(handle)
        return handle

    def close(self) -> None:
        handles, self.started = self.started, []
        for handle in handles:
            self._pool.release(handle)
