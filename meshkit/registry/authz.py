"""The compile step's authorization part: MeshSpec -> the ``AuthzPolicy`` every sidecar gets.

Pure.  ``mesh.allow``/``mesh.deny`` become one policy each, their sources
resolved to SPIFFE IDs (a service name, ``"gateway"``, or a SPIFFE ID as
written); the mesh's ``authorization`` mode adds, for every service:

* ``"deny"``: an ALLOW policy without rules (allow nothing), so only what an
  explicit ALLOW policy allows gets through (Istio's default-deny);
* ``"upstreams"``: an ALLOW policy of the callers the Meshfile declares, the
  services whose ``upstreams=`` name it and the gateway if it routes to it;
* ``"open"``: nothing.

Each policy's origin is ``Meshfile.py:LINE`` (the file's base name), for the
reason a denial gives.
"""

from __future__ import annotations

import os

import attrs

from meshkit.api.authz import AuthzPolicy, AuthzRule
from meshkit.api.jwt import JwtRule
from meshkit.ca.spiffe import spiffe_id
from meshkit.dsl.spec import MeshSpec, Origin

DEFAULT_DENY_POLICY = "default-deny"
UPSTREAMS_POLICY = "declared-upstreams"


def where(origin: Origin) -> str:
    return f"{os.path.basename(origin.file)}:{origin.line}"


def principal_of(mesh: str, source: str) -> str:
    """A source as written (service name, ``"gateway"``, SPIFFE ID) as a SPIFFE ID."""
    return source if source.startswith("spiffe://") else spiffe_id(mesh, source)


def _resolved(spec: MeshSpec, rule: AuthzRule) -> AuthzRule:
    return attrs.evolve(
        rule,
        principals=tuple(principal_of(spec.name, source) for source in rule.principals),
        not_principals=tuple(principal_of(spec.name, source) for source in rule.not_principals),
    )


def _mode_policies(spec: MeshSpec) -> list[AuthzPolicy]:
    if spec.authorization == "open":
        return []
    origin = where(spec.origin)
    policies = []
    for service in spec.service_names():
        if spec.authorization == "deny":
            policies.append(AuthzPolicy(name=DEFAULT_DENY_POLICY, service=service, origin=origin))
            continue
        callers = spec.callers_of(service)
        rules = (
            (AuthzRule(principals=tuple(spiffe_id(spec.name, caller) for caller in callers)),)
            if callers
            else ()
        )
        policies.append(
            AuthzPolicy(name=UPSTREAMS_POLICY, service=service, rules=rules, origin=origin)
        )
    return policies


def authorization_policies(spec: MeshSpec) -> tuple[AuthzPolicy, ...]:
    """Every policy of the mesh: the Meshfile's, then the mode's."""
    declared = [
        AuthzPolicy(
            name=policy.name,
            service=policy.service,
            action=policy.action,
            rules=(_resolved(spec, policy.rule),),
            origin=where(policy.origin),
        )
        for policy in spec.authz
    ]
    return (*declared, *_mode_policies(spec))


def jwt_rules(spec: MeshSpec) -> tuple[JwtRule, ...]:
    """The mesh's JWT rules, each with its ``Meshfile.py:LINE``."""
    return tuple(
        attrs.evolve(jwt.rule, origin=where(jwt.origin)) for jwt in spec.request_authentication
    )
