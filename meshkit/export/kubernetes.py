"""A ``MeshSpec`` as the Kubernetes and Istio objects of one namespace; pure.

The objects come in the order ``kubectl apply`` needs and a reader expects:
the Namespace, then kind by kind (ServiceAccounts, Services, Deployments,
PeerAuthentication, DestinationRules, VirtualServices, the Gateway and its
VirtualService, the EnvoyFilters of rate limits, the AuthorizationPolicies), each kind in the
Meshfile's declaration order.  The same
spec and options always give the same objects.
"""

from __future__ import annotations

from meshkit.dsl.spec import MeshSpec, RouteSpec
from meshkit.export.authz import authorization_policies
from meshkit.export.gateway import gateway_manifests
from meshkit.export.limits import rate_limit_filters
from meshkit.export.model import Export, ExportOptions, Finding, Manifest
from meshkit.export.policy import destination_rule, peer_authentication
from meshkit.export.routing import http_rules
from meshkit.export.workloads import (
    deployment,
    metadata,
    namespace_manifest,
    namespace_of,
    service,
    service_account,
)


def export_kubernetes(spec: MeshSpec, options: ExportOptions | None = None) -> Export:
    """Every object of ``spec`` for Kubernetes + Istio, and what did not carry over."""
    options = options if options is not None else ExportOptions()
    namespace = namespace_of(spec, options)
    findings: list[Finding] = []
    names = spec.service_names()
    firsts = [spec.deployments_of(name)[0] for name in names]
    manifests: list[Manifest] = [namespace_manifest(spec, options)]
    manifests.extend(service_account(first, namespace, options) for first in firsts)
    manifests.extend(service(first, namespace, options) for first in firsts)
    manifests.extend(
        deployment(deployed, namespace, options, findings) for deployed in spec.services
    )
    manifests.append(peer_authentication(spec, namespace, options, findings))
    manifests.extend(destination_rule(spec, name, namespace, options, findings) for name in names)
    routes = {route.service: route for route in spec.routes}
    for first in firsts:
        route = routes.get(first.name, RouteSpec(service=first.name, origin=first.origin))
        manifests.append(virtual_service(route, namespace, options, findings))
    if spec.gateway is not None:
        manifests.extend(gateway_manifests(spec, spec.gateway, namespace, options, findings))
    manifests.extend(rate_limit_filters(spec, namespace, options, findings))
    manifests.extend(authorization_policies(spec, namespace, options, findings))
    return Export(manifests=tuple(manifests), findings=tuple(findings))


def virtual_service(
    route: RouteSpec, namespace: str, options: ExportOptions, findings: list[Finding]
) -> Manifest:
    """The VirtualService of requests inside the mesh to ``route.service``.

    A service without ``mesh.route`` gets one too: meshkit's defaults (a 15 s
    timeout, no retries) are not Istio's (no timeout, two retries).
    """
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata(route.service, route.origin, options, namespace=namespace),
        "spec": {"hosts": [route.service], "http": http_rules(route, findings)},
    }
    return Manifest(body=body, origin=route.origin)


def file_names(manifests: tuple[Manifest, ...]) -> list[str]:
    """One file name per manifest, numbered so ``kubectl apply -f DIR`` keeps the order."""
    width = max(2, len(str(len(manifests))))
    return [
        f"{number:0{width}d}-{manifest.kind.lower()}-{manifest.name}.yaml"
        for number, manifest in enumerate(manifests, start=1)
    ]
