"""``mesh.rate_limit`` in ``meshkit export kubernetes``: an EnvoyFilter, or a finding."""

from __future__ import annotations

import pathlib

from tests.unit.test_export_routing import export_snippet, find

SNIPPET = """\
mesh.rate_limit("catalog", "100/s", burst=20)
mesh.rate_limit("catalog", "5/m", route=match(path_prefix="/search"))
mesh.rate_limit("frontend", "10/s", per="caller")"""


def test_a_service_wide_limit_is_an_envoy_filter_with_the_same_bucket(
    tmp_path: pathlib.Path,
) -> None:
    exported = export_snippet(tmp_path, SNIPPET)  # every object validated (EnvoyFilter's CRD)
    body = find(exported, "EnvoyFilter", "catalog-local-ratelimit")
    assert body["metadata"]["namespace"] == "shop"
    assert body["metadata"]["annotations"] == {"meshkit.dev/origin": "Meshfile.py:6"}
    assert body["spec"]["workloadSelector"] == {"labels": {"app": "catalog"}}
    [patch] = body["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER"
    assert patch["match"] == {
        "context": "SIDECAR_INBOUND",
        "listener": {
            "filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}
        },
    }
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    value = patch["patch"]["value"]
    assert value["name"] == "envoy.filters.http.local_ratelimit"
    typed = value["typed_config"]
    assert typed["@type"] == "type.googleapis.com/udpa.type.v1.TypedStruct"
    assert typed["type_url"] == (
        "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    )
    config = typed["value"]
    assert config["token_bucket"] == {
        "max_tokens": 20,
        "tokens_per_fill": 5,
        "fill_interval": "0.050s",
    }
    assert config["rate_limited_as_resource_exhausted"] is True
    for switch in ("filter_enabled", "filter_enforced"):
        assert config[switch]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
    assert set(config) == {
        "stat_prefix",
        "token_bucket",
        "filter_enabled",
        "filter_enforced",
        "rate_limited_as_resource_exhausted",
        "response_headers_to_add",
    }


def test_route_and_per_caller_limits_are_findings_naming_their_line(
    tmp_path: pathlib.Path,
) -> None:
    exported = export_snippet(tmp_path, SNIPPET)
    kinds = [manifest.kind for manifest in exported.manifests]
    assert kinds.count("EnvoyFilter") == 1
    assert kinds[-1] == "EnvoyFilter"
    notes = [finding.located(str(tmp_path)) for finding in exported.findings]
    assert [note for note in notes if "rate_limit" in note] == [
        "Meshfile.py:7: rate_limit 'catalog': a limit on one route has no Istio resource; "
        "not exported; attach a local_ratelimit typed_per_filter_config to the route by hand",
        "Meshfile.py:8: rate_limit 'frontend': a bucket per caller (verified identity) has no "
        "Envoy local rate limit equivalent; not exported",
    ]
