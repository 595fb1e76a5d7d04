"""Hot reload: re-read the Meshfile, and apply only what changed while traffic flows.

``Reloader.reload(meshfile=True)`` evaluates the Meshfile in a fresh
interpreter, applies the run's spec transform (``UpOptions.spec_transform``:
the same one the first spec got), diffs the result against the running spec
(``meshkit.registry.diff``), publishes the new configs (routes and policies
reach the sidecars without a restart) and executes the rollout plan
(``meshkit.runtime.policy.rollout``) for the deployments that must start, be
replaced or stop.  ``reload(forced=keys)`` replaces the instances of those
deployments (a source file under their ``watch`` paths changed).

A Meshfile that does not evaluate, validate or transform changes nothing that
runs: its problems (``Meshfile.py:14: ...``) are printed and kept in the
registry's ``ReloadReport`` (so ``meshkit status`` shows them) until a good
version is applied.  Every applied reload measures the time from the detected
change to the last sidecar's answer, logs it and records it.

One reload at a time: reloads and the initial start share a lock; a reload
that arrives while the mesh is still starting cancels the start, and its plan
starts whatever had not started yet.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import attrs
import trio

from meshkit.dsl.evaluate.evaluation import EvalResult, evaluate_async
from meshkit.dsl.spec import MeshSpec
from meshkit.registry.diff import DeploymentChange, DiffRefused, SpecDiff, diff_specs
from meshkit.registry.state import ReloadReport
from meshkit.runtime.fleet import Fleet
from meshkit.runtime.policy.plan import PlanError, startup_order
from meshkit.runtime.policy.rollout import (
    describe,
    interim_spec,
    plan_rollout,
    split_fresh_starts,
)

Evaluator = Callable[[str], Awaitable[EvalResult]]
SpecTransform = Callable[[MeshSpec], MeshSpec]


class SpecTransformError(Exception):
    """A spec transform cannot apply to this spec (the message is for people)."""


def identity_transform(spec: MeshSpec) -> MeshSpec:
    return spec


async def evaluate_meshfile(path: str) -> EvalResult:
    return await evaluate_async(path)


@attrs.frozen(kw_only=True)
class ReloadOutcome:
    """What one reload did: ``applied`` False means nothing that runs was touched."""

    applied: bool
    summary: str
    error: str | None = None
    duration_ms: float | None = None

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


@attrs.define(eq=False)
class Reloader:
    """Applies Meshfile edits and source changes to the mesh of ``fleet``."""

    fleet: Fleet
    meshfile: str = attrs.field(kw_only=True)
    files: tuple[str, ...] = attrs.field(kw_only=True, default=())
    transform: SpecTransform = attrs.field(kw_only=True, default=identity_transform)
    evaluate: Evaluator = attrs.field(kw_only=True, default=evaluate_meshfile)
    on_applied: Callable[[MeshSpec], None] | None = attrs.field(kw_only=True, default=None)
    # Run after each Meshfile reload has answered (the next warm evaluator child).
    prepare_next: Callable[[], Awaitable[None]] | None = attrs.field(kw_only=True, default=None)
    lock: trio.Lock = attrs.field(init=False, factory=trio.Lock)
    startup: trio.CancelScope = attrs.field(init=False, factory=trio.CancelScope)

    def announce(self, message: str) -> None:
        self.fleet.ctx.logs.announce(message)

    async def start(self) -> None:
        """The initial start of every service, under the reload lock (a reload cancels it)."""
        async with self.lock:
            with self.startup:
                await self.fleet.start_all()

    async def reload(
        self,
        *,
        meshfile: bool = True,
        forced: frozenset[str] = frozenset(),
        detected_at: float | None = None,
        reason: str = "meshkit reload",
        forced_because: str = "source",
    ) -> ReloadOutcome:
        """Re-read the Meshfile (if ``meshfile``) and replace the ``forced`` deployments.

        ``forced_because`` is why they are replaced (a changed ``source`` under
        their ``watch`` paths, ``meshkit restart catalog``): the summary and
        ``meshkit status`` say so.
        """
        phases = _Phases(trio.current_time() if detected_at is None else detected_at)
        self.startup.cancel()
        async with self.lock:
            phases.mark("wait")
            if not meshfile:
                return await self._changed(self.fleet.spec, forced, forced_because, phases)
            outcome = await self._read_and_apply(forced, forced_because, reason, phases)
            if self.prepare_next is not None:
                await self.prepare_next()
            return outcome

    async def _read_and_apply(
        self, forced: frozenset[str], forced_because: str, reason: str, phases: _Phases
    ) -> ReloadOutcome:
        self.announce(f"meshkit: {reason}: reading {self.meshfile}")
        result = await self.evaluate(self.meshfile)
        phases.mark("evaluate")
        if result.files:
            self.files = result.files
        if not result.ok or result.spec is None:
            problems = "; ".join(str(problem) for problem in result.problems)
            return self._refuse(problems or "the Meshfile did not evaluate")
        try:
            spec = self.transform(result.spec)
            startup_order(spec)
        except (SpecTransformError, PlanError) as error:
            return self._refuse(str(error))
        return await self._changed(spec, forced, forced_because, phases)

    async def _changed(
        self, spec: MeshSpec, forced: frozenset[str], forced_because: str, phases: _Phases
    ) -> ReloadOutcome:
        try:
            diff = diff_specs(self.fleet.spec, spec)
        except DiffRefused as error:
            return self._refuse(str(error))
        diff = _with_forced(diff, spec, forced, why=forced_because)
        phases.mark("diff")
        return await self._apply(spec, diff, forced=forced, phases=phases)

    def _refuse(self, error: str) -> ReloadOutcome:
        self.announce(f"meshkit: reload refused, nothing changed: {error}")
        previous = self.fleet.registry.reload
        self.fleet.registry.record_reload(
            attrs.evolve(previous, error=error, finished_at=time.time())
        )
        return ReloadOutcome(applied=False, summary="nothing changed", error=error)

    async def _apply(
        self, spec: MeshSpec, diff: SpecDiff, *, forced: frozenset[str], phases: _Phases
    ) -> ReloadOutcome:
        fleet = self.fleet
        steps = plan_rollout(spec, fleet.running_slots(), forced=forced)
        fresh, rest = split_fresh_starts(steps)
        fleet.spec = interim_spec(fleet.spec, spec) if fresh else spec
        if self.on_applied is not None:
            self.on_applied(spec)
        fleet.publish()
        phases.mark("publish")
        summary = diff.summary()
        self.announce(f"meshkit: reloading: {summary}; {describe(steps)}")
        problems: list[str] = []
        if not await fleet.wait_in_sync():
            problems.append(fleet.unsynced_message())
        phases.mark("sync")
        reasons = _reasons(diff, forced)
        if fresh:
            problems += await fleet.execute(fresh, reasons=reasons)
            fleet.spec = spec  # the new routes, now that their destinations serve
            fleet.publish()
            if not await fleet.wait_in_sync():
                problems.append(fleet.unsynced_message())
        problems += await fleet.execute(rest, reasons=reasons)
        if steps and not await fleet.wait_in_sync():
            problems.append(fleet.unsynced_message())
        problems += fleet.nacks()
        phases.mark("rollout")
        duration_ms = phases.total_ms()
        error = "; ".join(problems) if problems else None
        report = ReloadReport(
            reloads=fleet.registry.reload.reloads + 1,
            error=error,
            duration_ms=duration_ms,
            summary=summary,
            finished_at=time.time(),
            phases_ms=phases.spent,
        )
        fleet.registry.record_reload(report)
        outcome = f"with problems: {error}" if error else "every sidecar in sync"
        split = ", ".join(f"{phase} {ms:.0f}" for phase, ms in phases.spent.items())
        self.announce(
            f"meshkit: reload applied in {duration_ms:.0f} ms "
            f"(change detected -> last sidecar ACK: {split}), {outcome}"
        )
        return ReloadOutcome(applied=True, summary=summary, error=error, duration_ms=duration_ms)


class _Phases:
    """Where a reload's time went, in ms since the previous mark (phases under 0.1 ms left out)."""

    def __init__(self, detected: float) -> None:
        self.detected = self.last = detected
        self.spent: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = trio.current_time()
        if (spent := round((now - self.last) * 1000, 1)) > 0:
            self.spent[phase] = spent
        self.last = now

    def total_ms(self) -> float:
        return round((self.last - self.detected) * 1000, 1)


def _with_forced(diff: SpecDiff, spec: MeshSpec, forced: frozenset[str], *, why: str) -> SpecDiff:
    """``diff`` plus a restart (for ``why``) of each forced deployment it does not change already."""
    changed = {change.key for change in diff.deployments}
    extra = tuple(
        DeploymentChange(key=svc.key, service=svc.name, kind="restart", reasons=(why,))
        for svc in spec.services
        if svc.key in forced and svc.key not in changed
    )
    return attrs.evolve(diff, deployments=(*diff.deployments, *extra))


def _reasons(diff: SpecDiff, forced: frozenset[str]) -> dict[str, str]:
    """Why each deployment's new instances start, by key (``meshkit status`` shows it).

    A forced restart's one reason is the reload's own (``meshkit restart catalog``).
    """
    reasons: dict[str, str] = {}
    for change in diff.deployments:
        what = ", ".join(change.reasons)
        if change.kind == "start":
            reasons[change.key] = "new in the Meshfile"
        elif change.kind == "restart":
            reasons[change.key] = what if change.key in forced else f"Meshfile changed: {what}"
    return reasons
