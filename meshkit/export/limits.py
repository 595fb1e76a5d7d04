"""``mesh.rate_limit`` as Istio's EnvoyFilter with Envoy's local rate limit filter.

Istio has no rate limit resource of its own; what teams apply is an
EnvoyFilter that inserts ``envoy.filters.http.local_ratelimit`` into the
inbound HTTP filter chain of the service's pods, with the same token bucket
(``max_tokens``, ``tokens_per_fill``, ``fill_interval``) meshkit's sidecars
keep, enforced in each pod as meshkit enforces it in each instance, gRPC
refusals as ``RESOURCE_EXHAUSTED``.  One EnvoyFilter per service with a
service-wide limit.

What that filter cannot say from a Meshfile alone is a finding: a limit on
one route (Envoy wants it on a named route of the generated configuration)
or per caller (Envoy's local descriptors key on headers, not on the verified
peer identity).  Envoy's refusal carries no ``retry-after``.
"""

from __future__ import annotations

from typing import Any

from meshkit.dsl.spec import MeshSpec, RateLimitSpec
from meshkit.export.model import ExportOptions, Finding, Manifest, Notes
from meshkit.export.workloads import metadata

LOCAL_RATELIMIT = "envoy.filters.http.local_ratelimit"
LOCAL_RATELIMIT_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
)
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"


def rate_limit_filters(
    spec: MeshSpec, namespace: str, options: ExportOptions, findings: list[Finding]
) -> list[Manifest]:
    """One EnvoyFilter per service-wide limit; a finding for each limit left out."""
    manifests = []
    for limit in spec.rate_limits:
        notes = Notes(
            findings=findings, subject=f"rate_limit {limit.service!r}", origin=limit.origin
        )
        if limit.match is not None:
            notes.add(
                "a limit on one route has no Istio resource",
                "not exported; attach a local_ratelimit typed_per_filter_config to the route by hand",
            )
        elif limit.per == "caller":
            notes.add(
                "a bucket per caller (verified identity) has no Envoy local rate limit equivalent",
                "not exported",
            )
        else:
            manifests.append(_envoy_filter(limit, namespace, options))
    return manifests


def _percent(key: str) -> dict[str, Any]:
    return {"runtime_key": key, "default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def _envoy_filter(limit: RateLimitSpec, namespace: str, options: ExportOptions) -> Manifest:
    config = {
        "stat_prefix": "http_local_rate_limiter",
        "token_bucket": {
            "max_tokens": limit.max_tokens,
            "tokens_per_fill": limit.tokens_per_fill,
            "fill_interval": f"{limit.fill_interval:.3f}s",
        },
        "filter_enabled": _percent("local_rate_limit_enabled"),
        "filter_enforced": _percent("local_rate_limit_enforced"),
        "rate_limited_as_resource_exhausted": True,
        "response_headers_to_add": [
            {
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                "header": {"key": "x-meshkit-flag", "value": "RL"},
            }
        ],
    }
    patch = {
        "applyTo": "HTTP_FILTER",
        "match": {
            "context": "SIDECAR_INBOUND",
            "listener": {"filterChain": {"filter": {"name": HTTP_CONNECTION_MANAGER}}},
        },
        "patch": {
            "operation": "INSERT_BEFORE",
            "value": {
                "name": LOCAL_RATELIMIT,
                "typed_config": {
                    "@type": TYPED_STRUCT,
                    "type_url": LOCAL_RATELIMIT_TYPE,
                    "value": config,
                },
            },
        },
    }
    body = {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": metadata(
            f"{limit.service}-local-ratelimit", limit.origin, options, namespace=namespace
        ),
        "spec": {"workloadSelector": {"labels": {"app": limit.service}}, "configPatches": [patch]},
    }
    return Manifest(body=body, origin=limit.origin)
