"""``mesh.gateway`` as an Istio Gateway on the ingress gateway and its VirtualService.

meshkit's gateway picks a service by the longest matching prefix and then
applies that service's ``mesh.route``.  In Istio a VirtualService bound to a
gateway is all the gateway applies, so the gateway's VirtualService holds,
prefix by prefix (longest first), the service's own rules narrowed to the
prefix.  The listeners become Istio's ingress gateway ports: 80 for HTTP and,
with ``tls_port``, 443 for HTTPS with a certificate the cluster provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshkit.dsl.spec import GatewayRoute, GatewaySpec, MeshSpec, RouteSpec
from meshkit.export.model import ExportOptions, Finding, Manifest
from meshkit.export.routing import http_rules
from meshkit.export.workloads import metadata

INGRESS_SELECTOR = {"istio": "ingressgateway"}
HTTP_PORT = 80
HTTPS_PORT = 443


def gateway_name(spec: MeshSpec) -> str:
    return f"{spec.name}-gateway"


def gateway_manifests(
    spec: MeshSpec,
    gateway: GatewaySpec,
    namespace: str,
    options: ExportOptions,
    findings: list[Finding],
) -> list[Manifest]:
    """The Gateway and the VirtualService that routes what it receives."""
    name = gateway_name(spec)
    servers: list[dict[str, Any]] = [
        {"port": {"number": HTTP_PORT, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
    ]
    if gateway.tls_port is not None:
        secret = f"{name}-cert"
        servers.append(
            {
                "port": {"number": HTTPS_PORT, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "tls": {"mode": "SIMPLE", "credentialName": secret},
            }
        )
        findings.append(
            Finding(
                origin=gateway.origin,
                subject="gateway",
                message="tls_port's certificate comes from meshkit's local CA",
                instead=f"the HTTPS server reads the secret {secret!r}, which you create "
                "(kubectl create secret tls) in the ingress gateway's namespace",
            )
        )
    gateway_body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": metadata(name, gateway.origin, options, namespace=namespace),
        "spec": {"selector": dict(INGRESS_SELECTOR), "servers": servers},
    }
    routing_body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata(name, gateway.origin, options, namespace=namespace),
        "spec": {"hosts": ["*"], "gateways": [name], "http": _edge_rules(spec, gateway, findings)},
    }
    return [
        Manifest(body=gateway_body, origin=gateway.origin),
        Manifest(body=routing_body, origin=gateway.origin),
    ]


def _edge_rules(
    spec: MeshSpec, gateway: GatewaySpec, findings: list[Finding]
) -> list[dict[str, Any]]:
    routes = {route.service: route for route in spec.routes}
    ordered = sorted(gateway.routes, key=lambda edge: len(edge.prefix), reverse=True)
    entries: list[dict[str, Any]] = []
    for edge in ordered:
        route = routes.get(edge.service, RouteSpec(service=edge.service, origin=edge.origin))

        def regex_path(rule: str, edge: GatewayRoute = edge) -> None:
            findings.append(
                Finding(
                    origin=edge.origin,
                    subject=f"gateway prefix {edge.prefix!r}",
                    message=f"route {edge.service!r} {rule} matches its path by regex, "
                    "which cannot also require the prefix",
                    instead="the rule applies at the gateway to any path its regex matches",
                )
            )

        # The service's own findings are reported with its mesh VirtualService.
        for entry in http_rules(route, []):
            narrowed = _narrowed(entry, edge.prefix, regex_path)
            if narrowed is not None:
                narrowed["name"] = f"{edge.service}-{entry['name']}"
                entries.append(narrowed)
    return entries


def _narrowed(
    entry: dict[str, Any], prefix: str, regex_path: Callable[[str], None]
) -> dict[str, Any] | None:
    """``entry`` limited to paths under ``prefix``; None if it can never match there."""
    kept: list[dict[str, Any]] = []
    for condition in entry.get("match", [{}]):
        uri = condition.get("uri")
        if uri is None:
            kept.append({"uri": {"prefix": prefix}, **condition})
        elif "regex" in uri:
            if prefix != "/":
                regex_path(f"rule {entry['name']!r}")
            kept.append(condition)
        elif next(iter(uri.values())).startswith(prefix):
            kept.append(condition)
    if not kept:
        return None
    rest = {key: value for key, value in entry.items() if key not in ("name", "match")}
    return {"name": entry["name"], "match": kept, **rest}
