"""The Reloader without processes: refusals change nothing, the transform applies every time."""

from __future__ import annotations

import io
from pathlib import Path

import attrs
import trio

from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.evaluate.evaluation import EvalResult
from meshkit.dsl.spec import GatewayRoute, GatewaySpec, MeshSpec
from meshkit.registry.server.changes import RegistryChanges
from meshkit.registry.state import Registry
from meshkit.runtime.fleet import Fleet
from meshkit.runtime.logs import LogHub
from meshkit.runtime.ports import PortAllocator
from meshkit.runtime.process import NoGuard
from meshkit.runtime.reload import Reloader, SpecTransformError
from meshkit.runtime.supervisor import SupervisorContext

SPEC = MeshSpec(name="shop", file="Meshfile.py")


def gateway_to(service: str) -> GatewaySpec:
    return GatewaySpec(port=0, routes=(GatewayRoute(prefix="/", service=service),))


async def test_refused_reloads_change_nothing_and_the_transform_applies_each_time(
    tmp_path: Path,
) -> None:
    terminal = io.StringIO()
    registry = Registry(mesh="shop")
    ctx = SupervisorContext(
        registry=registry,
        changes=RegistryChanges(registry),
        logs=LogHub(tmp_path, terminal=terminal),
        guard=NoGuard(),
        control_socket=tmp_path / "control.sock",
        base_dir=tmp_path,
    )
    results: list[EvalResult] = []

    async def evaluate(path: str) -> EvalResult:
        return results.pop(0)

    def transform(spec: MeshSpec) -> MeshSpec:
        if spec.cert_lifetime == 1.0:
            raise SpecTransformError("no such service 'x' to start")
        return attrs.evolve(spec, mtls="permissive")

    async with trio.open_nursery() as nursery:
        fleet = Fleet(ctx, SPEC, ports=PortAllocator(), nursery=nursery)
        applied: list[MeshSpec] = []
        reloader = Reloader(
            fleet,
            meshfile="Meshfile.py",
            transform=transform,
            evaluate=evaluate,
            on_applied=applied.append,
        )
        results.append(
            EvalResult(spec=None, problems=(Problem(file="Meshfile.py", line=3, message="boom"),))
        )
        outcome = await reloader.reload()
        assert not outcome.applied and outcome.error == "Meshfile.py:3: boom"
        assert registry.reload.error == "Meshfile.py:3: boom" and registry.reload.reloads == 0
        assert "reload refused, nothing changed: Meshfile.py:3: boom" in terminal.getvalue()

        results.append(EvalResult(spec=attrs.evolve(SPEC, name="other")))
        outcome = await reloader.reload()
        assert not outcome.applied and "renaming a mesh" in (outcome.error or "")

        results.append(EvalResult(spec=attrs.evolve(SPEC, cert_lifetime=1.0)))
        outcome = await reloader.reload()
        assert outcome.error == "no such service 'x' to start" and fleet.spec is SPEC

        results.append(EvalResult(spec=SPEC, files=("/src/Meshfile.py", "/src/lib.py")))
        outcome = await reloader.reload()
        assert outcome.applied and outcome.error is None
        assert outcome.summary == "config: mtls"
        assert fleet.spec.mtls == "permissive" and applied == [fleet.spec]
        assert reloader.files == ("/src/Meshfile.py", "/src/lib.py")
        assert registry.reload.error is None and registry.reload.reloads == 1
        assert registry.reload.duration_ms is not None
        assert "reload applied in" in terminal.getvalue()
        nursery.cancel_scope.cancel()
    ctx.logs.close()
