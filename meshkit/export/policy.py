"""``mesh.policy`` and the mesh's mTLS mode as Istio's DestinationRule and PeerAuthentication.

Every service gets a DestinationRule, whether or not the Meshfile has a
``mesh.policy`` for it, because meshkit's defaults (Envoy's breaker limits,
ejection after 5 errors in a row) hold for every destination while Istio's
outlier detection is off unless asked for.  A subset per declared version
lets VirtualServices name versions.
"""

from __future__ import annotations

from typing import Any

from meshkit.dsl.durations import format_duration
from meshkit.dsl.spec import BudgetSpec, MeshSpec, OutlierSpec, PolicySpec
from meshkit.export.model import ExportOptions, Finding, Manifest, Notes, istio_duration
from meshkit.export.workloads import metadata

LOAD_BALANCERS = {"round_robin": "ROUND_ROBIN", "least_request": "LEAST_REQUEST"}
MTLS_MODES = {"strict": "STRICT", "permissive": "PERMISSIVE"}
ENVOY_MAX_EJECTION = 300.0
"""Envoy's cap on an ejection (seconds); Istio has no field to change it."""
DEFAULT_CERT_LIFETIME = 24 * 3600.0


def destination_rule(
    spec: MeshSpec, service: str, namespace: str, options: ExportOptions, findings: list[Finding]
) -> Manifest:
    declared = [policy for policy in spec.policies if policy.service == service]
    policy = declared[-1] if declared else PolicySpec(service=service)
    deployments = spec.deployments_of(service)
    origin = policy.origin if declared else deployments[0].origin
    versions = [deployed.version for deployed in deployments if deployed.version is not None]
    body_spec: dict[str, Any] = {
        "host": service,
        "trafficPolicy": traffic_policy(policy, findings),
    }
    if versions:
        body_spec["subsets"] = [
            {"name": version, "labels": {"version": version}} for version in versions
        ]
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": metadata(service, origin, options, namespace=namespace),
        "spec": body_spec,
    }
    return Manifest(body=body, origin=origin)


def traffic_policy(policy: PolicySpec, findings: list[Finding]) -> dict[str, Any]:
    """Load balancer, connection pool (the breaker) and outlier detection of one service."""
    breaker = policy.breaker
    traffic: dict[str, Any] = {
        "loadBalancer": {"simple": LOAD_BALANCERS[policy.load_balancer]},
        "connectionPool": {
            "tcp": {"maxConnections": breaker.max_connections},
            "http": {
                "http2MaxRequests": breaker.max_requests,
                "maxRetries": breaker.max_retries,
            },
        },
        "outlierDetection": _outlier_detection(policy, findings),
    }
    if policy.retry_budget != BudgetSpec():
        traffic["retryBudget"] = _retry_budget(policy, findings)
    return traffic


def _outlier_detection(policy: PolicySpec, findings: list[Finding]) -> dict[str, Any]:
    outlier: OutlierSpec = policy.outlier
    percent = round(outlier.max_ejection_percent)
    notes = Notes(findings=findings, subject=f"policy {policy.service!r}", origin=outlier.origin)
    if percent != outlier.max_ejection_percent:
        notes.add(
            f"max_ejection_percent={outlier.max_ejection_percent:g} is not whole",
            f"maxEjectionPercent: {percent}",
        )
    if outlier.max_ejection != ENVOY_MAX_EJECTION:
        notes.add(
            f"max_ejection={format_duration(outlier.max_ejection)} has no Istio field",
            f"Envoy's cap of {istio_duration(ENVOY_MAX_EJECTION)} applies",
        )
    return {
        "consecutive5xxErrors": outlier.consecutive_errors,
        "baseEjectionTime": istio_duration(outlier.base_ejection),
        "maxEjectionPercent": percent,
    }


def _retry_budget(policy: PolicySpec, findings: list[Finding]) -> dict[str, Any]:
    budget = policy.retry_budget
    findings.append(
        Finding(
            origin=budget.origin,
            subject=f"policy {policy.service!r}",
            message="Istio's retryBudget limits concurrent retries, not retries per "
            f"{format_duration(budget.window)} window",
            instead=f"retryBudget percent {budget.percent:g} and minRetryConcurrency "
            f"{round(budget.min_per_second)}; Envoy then ignores maxRetries",
        )
    )
    return {"percent": float(budget.percent), "minRetryConcurrency": round(budget.min_per_second)}


def peer_authentication(
    spec: MeshSpec, namespace: str, options: ExportOptions, findings: list[Finding]
) -> Manifest:
    """The namespace's mTLS mode; a workload certificate lifetime is istiod's to set."""
    if spec.cert_lifetime != DEFAULT_CERT_LIFETIME:
        findings.append(
            Finding(
                origin=spec.origin,
                subject=f"Mesh({spec.name!r})",
                message=f"cert_lifetime={format_duration(spec.cert_lifetime)} has no "
                "namespace-level Istio field",
                instead="dropped: istiod's workload certificate lifetime (24h) applies",
            )
        )
    body = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": metadata("default", spec.origin, options, namespace=namespace),
        "spec": {"mtls": {"mode": MTLS_MODES[spec.mtls]}},
    }
    return Manifest(body=body, origin=spec.origin)
