"""``mesh.allow``/``mesh.deny`` and the authorization mode as Istio's AuthorizationPolicy.

One ``security.istio.io/v1`` AuthorizationPolicy per Meshfile policy, on the
pods of its service (``selector: app``), with one rule: ``from.source``
(principals, namespaces, client addresses), ``to.operation`` (methods,
paths) and ``when`` (header values).  Identities change trust domain:
meshkit's ``spiffe://meshkit.local/ns/<mesh>/sa/<service>`` is Istio's
``cluster.local/ns/<namespace>/sa/<service>``, the gateway is the ingress
gateway's service account, another SPIFFE ID is kept without its scheme.

``authorization="deny"`` is Istio's allow-nothing policy for the namespace
(``spec: {}``); ``"upstreams"`` is one ALLOW policy per service naming its
declared callers (none: an ALLOW policy without rules, which allows nothing).

meshkit decides client-address rules at its gateway; in Istio the client
address of a request through the ingress gateway is ``remoteIpBlocks`` (from
``X-Forwarded-For``, once the gateway trusts its proxies): exported so, with a
finding.

``mesh.request_authentication`` rules are one namespace-wide
RequestAuthentication (``jwtRules`` with the JWKS inline and the token
forwarded to the app, as meshkit does): every pod's sidecar verifies tokens,
as meshkit's inbound sidecars do; the ingress gateway in ``istio-system``
needs its own if it should refuse bad tokens first.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from meshkit.api.authz import AuthzRule
from meshkit.dsl.spec import GATEWAY_CALLER, AuthzSpec, MeshSpec
from meshkit.export.model import ExportOptions, Finding, Manifest, Notes
from meshkit.export.workloads import metadata

API_VERSION = "security.istio.io/v1"
TRUST_DOMAIN = "cluster.local"
INGRESS_PRINCIPAL = f"{TRUST_DOMAIN}/ns/istio-system/sa/istio-ingressgateway-service-account"
MESHKIT_PREFIX = "spiffe://meshkit.local/ns/"
ALLOW_NOTHING = "allow-nothing"
UPSTREAMS_POLICY = "declared-upstreams"
REQUEST_AUTHENTICATION = "request-authentication"


def authorization_policies(
    spec: MeshSpec, namespace: str, options: ExportOptions, findings: list[Finding]
) -> list[Manifest]:
    """The AuthorizationPolicies of ``spec``: the Meshfile's, then the mode's."""
    names = Counter(policy.name for policy in spec.authz)
    manifests = [
        _declared(spec, policy, names[policy.name] > 1, namespace, options, findings)
        for policy in spec.authz
    ]
    if spec.request_authentication:
        manifests.insert(0, _request_authentication(spec, namespace, options))
    if spec.authorization == "deny":
        body = _policy(ALLOW_NOTHING, spec, namespace, options, {})
        manifests.append(Manifest(body=body, origin=spec.origin))
    elif spec.authorization == "upstreams":
        for service in spec.service_names():
            callers = [_principal(spec, namespace, caller) for caller in spec.callers_of(service)]
            body_spec: dict[str, Any] = {"selector": _selector(service), "action": "ALLOW"}
            if callers:
                body_spec["rules"] = [{"from": [{"source": {"principals": callers}}]}]
            name = f"{UPSTREAMS_POLICY}-{service}"
            body = _policy(name, spec, namespace, options, body_spec)
            manifests.append(Manifest(body=body, origin=spec.origin))
    return manifests


def _policy(
    name: str, spec: MeshSpec, namespace: str, options: ExportOptions, body_spec: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AuthorizationPolicy",
        "metadata": metadata(name, spec.origin, options, namespace=namespace),
        "spec": body_spec,
    }


def _request_authentication(spec: MeshSpec, namespace: str, options: ExportOptions) -> Manifest:
    rules = []
    for jwt in spec.request_authentication:
        rule: dict[str, Any] = {"issuer": jwt.rule.issuer}
        if jwt.rule.audiences:
            rule["audiences"] = list(jwt.rule.audiences)
        rules.append({**rule, "jwks": jwt.rule.jwks, "forwardOriginalToken": True})
    origin = spec.request_authentication[0].origin
    body = {
        "apiVersion": API_VERSION,
        "kind": "RequestAuthentication",
        "metadata": metadata(REQUEST_AUTHENTICATION, origin, options, namespace=namespace),
        "spec": {"jwtRules": rules},
    }
    return Manifest(body=body, origin=origin)


def _selector(service: str) -> dict[str, Any]:
    return {"matchLabels": {"app": service}}


def _declared(
    spec: MeshSpec,
    policy: AuthzSpec,
    shared_name: bool,
    namespace: str,
    options: ExportOptions,
    findings: list[Finding],
) -> Manifest:
    name = f"{policy.name}-{policy.service}" if shared_name else policy.name
    rule = policy.rule
    if rule.speaks_of_client_address:
        Notes(findings=findings, subject=f"{policy.action.lower()} {policy.service!r}",
              origin=policy.origin).add(
            "meshkit decides client-address rules at its gateway",
            "exported as remoteIpBlocks; set the ingress gateway's numTrustedProxies",
        )  # fmt: skip
    body = {
        "apiVersion": API_VERSION,
        "kind": "AuthorizationPolicy",
        "metadata": metadata(name, policy.origin, options, namespace=namespace),
        "spec": {
            "selector": _selector(policy.service),
            "action": policy.action,
            "rules": [_rule(spec, namespace, rule)],
        },
    }
    return Manifest(body=body, origin=policy.origin)


def _principal(spec: MeshSpec, namespace: str, source: str) -> str:
    """A source as written in the Meshfile, as an Istio principal."""
    if source == GATEWAY_CALLER:
        return INGRESS_PRINCIPAL
    if source.startswith(MESHKIT_PREFIX):
        mesh, _, rest = source.removeprefix(MESHKIT_PREFIX).partition("/")
        if mesh == spec.name and rest == f"sa/{GATEWAY_CALLER}":
            return INGRESS_PRINCIPAL
        return f"{TRUST_DOMAIN}/ns/{namespace if mesh == spec.name else mesh}/{rest}"
    if source.startswith("spiffe://"):
        return source.removeprefix("spiffe://")
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{source}"


def _rule(spec: MeshSpec, namespace: str, rule: AuthzRule) -> dict[str, Any]:
    def mesh_namespace(name: str) -> str:
        return namespace if name == spec.name else name

    source = {
        "principals": [_principal(spec, namespace, s) for s in rule.principals],
        "notPrincipals": [_principal(spec, namespace, s) for s in rule.not_principals],
        "namespaces": [mesh_namespace(n) for n in rule.namespaces],
        "notNamespaces": [mesh_namespace(n) for n in rule.not_namespaces],
        "remoteIpBlocks": list(rule.ip_blocks),
        "notRemoteIpBlocks": list(rule.not_ip_blocks),
        "requestPrincipals": list(rule.request_principals),
        "notRequestPrincipals": list(rule.not_request_principals),
    }
    operation = {
        "methods": list(rule.methods),
        "notMethods": list(rule.not_methods),
        "paths": list(rule.paths),
        "notPaths": list(rule.not_paths),
    }
    found: dict[str, Any] = {}
    if any(source.values()):
        found["from"] = [{"source": {k: v for k, v in source.items() if v}}]
    if any(operation.values()):
        found["to"] = [{"operation": {k: v for k, v in operation.items() if v}}]
    conditions = []
    keyed = [(f"request.headers[{h.name}]", h) for h in rule.headers]
    keyed += [(f"request.auth.claims[{c.name}]", c) for c in rule.claims]
    for key, header in keyed:
        condition: dict[str, Any] = {"key": key}
        if header.values:
            condition["values"] = list(header.values)
        if header.not_values:
            condition["notValues"] = list(header.not_values)
        conditions.append(condition)
    if conditions:
        found["when"] = conditions
    return found
