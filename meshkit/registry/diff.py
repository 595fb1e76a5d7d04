"""What changed between two MeshSpecs, and what that means for what runs.  Pure.

A reload applies only the difference between the running spec and the new one:

* ``restart``: a deployment (``catalog-v1``) whose process would run
  differently: command, env, cwd, health check, upstreams (the app's
  environment names a port per upstream), dependencies or restart policy;
  its instances are replaced one by one (``meshkit.runtime.policy.rollout``).
* ``scale``: only ``replicas`` changed: instances are added or removed, the
  others are left alone.
* ``start`` / ``stop``: a deployment added or removed.
* everything else (routes, splits, retries, timeouts, faults, policies, the
  gateway's routes and ports, the mTLS mode) is config: compiled and pushed
  to the sidecars, nothing restarts.

``origin`` (the Meshfile line of a declaration) never counts as a change, so
moving a declaration within the file changes nothing; neither does ``watch``,
which only tells the watcher where to look.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from meshkit.dsl.spec import UNKNOWN_ORIGIN, MeshSpec, ServiceSpec

ChangeKind = Literal["start", "stop", "restart", "scale"]

# The fields of a ServiceSpec that do not change how its process runs.
_NOT_RESTARTING = ("replicas", "watch", "image", "origin")


class DiffRefused(Exception):
    """A change a reload cannot apply while the mesh runs (the message says why)."""


@attrs.frozen(kw_only=True)
class DeploymentChange:
    """How one deployment (``ServiceSpec.key``) changes, and why."""

    key: str
    service: str
    kind: ChangeKind
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        why = f" ({', '.join(self.reasons)})" if self.reasons else ""
        return f"{self.kind} {self.key}{why}"


@attrs.frozen(kw_only=True)
class SpecDiff:
    """Every deployment change, and which parts of the pushed config changed."""

    deployments: tuple[DeploymentChange, ...] = ()
    config: tuple[str, ...] = ()  # e.g. ("routes", "gateway")

    @property
    def empty(self) -> bool:
        return not self.deployments and not self.config

    def keys(self, kind: ChangeKind) -> frozenset[str]:
        return frozenset(change.key for change in self.deployments if change.kind == kind)

    def summary(self) -> str:
        """One line for people: ``restart catalog-v1 (env); config: routes``."""
        parts = [change.describe() for change in self.deployments]
        if self.config:
            parts.append("config: " + ", ".join(self.config))
        return "; ".join(parts) if parts else "no change"


def restart_reasons(old: ServiceSpec, new: ServiceSpec) -> tuple[str, ...]:
    """The fields whose change means ``old``'s processes must be replaced (empty: none)."""
    reasons = []
    for field in attrs.fields(ServiceSpec):
        if field.name in _NOT_RESTARTING:
            continue
        if without_origins(getattr(old, field.name)) != without_origins(getattr(new, field.name)):
            reasons.append(field.name)
    return tuple(reasons)


def diff_specs(old: MeshSpec, new: MeshSpec) -> SpecDiff:
    """What applying ``new`` over a mesh running ``old`` involves.

    Raises ``DiffRefused`` for what only a new ``meshkit up`` can do (renaming the mesh).
    """
    if old.name != new.name:
        raise DiffRefused(
            f"the mesh is called {old.name!r} and the Meshfile now says {new.name!r}; "
            "renaming a mesh needs 'meshkit down' and 'meshkit up'"
        )
    before = {svc.key: svc for svc in old.services}
    after = {svc.key: svc for svc in new.services}
    changes: list[DeploymentChange] = []
    for key, deployment in after.items():
        previous = before.get(key)
        if previous is None:
            changes.append(DeploymentChange(key=key, service=deployment.name, kind="start"))
            continue
        reasons = restart_reasons(previous, deployment)
        if reasons:
            changes.append(
                DeploymentChange(key=key, service=deployment.name, kind="restart", reasons=reasons)
            )
        elif previous.replicas != deployment.replicas:
            changes.append(
                DeploymentChange(
                    key=key,
                    service=deployment.name,
                    kind="scale",
                    reasons=(f"replicas {previous.replicas} -> {deployment.replicas}",),
                )
            )
    for key, deployment in before.items():
        if key not in after:
            changes.append(DeploymentChange(key=key, service=deployment.name, kind="stop"))
    config = tuple(
        name
        for name in (
            "routes",
            "policies",
            "rate_limits",
            "authorization",
            "authz",
            "request_authentication",
            "gateway",
            "mtls",
            "cert_lifetime",
        )
        if without_origins(getattr(old, name)) != without_origins(getattr(new, name))
    )
    return SpecDiff(deployments=tuple(changes), config=config)


def without_origins(value: Any) -> Any:
    """``value`` with every ``origin`` of every attrs object in it forgotten."""
    if attrs.has(type(value)):
        changes = {
            field.name: without_origins(getattr(value, field.name))
            for field in attrs.fields(type(value))
        }
        if "origin" in changes:
            changes["origin"] = UNKNOWN_ORIGIN
        return attrs.evolve(value, **changes)
    if isinstance(value, tuple):
        return tuple(without_origins(item) for item in value)
    return value
