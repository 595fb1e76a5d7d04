"""Authorization policies exported as Istio's AuthorizationPolicy, validated against the CRD."""

from __future__ import annotations

import pathlib
from typing import Any

from meshkit.export import ExportOptions
from tests.schemas.validation import export_validated

HEADER = """\
from meshkit import Mesh

mesh = Mesh("shop", authorization={mode!r})
mesh.service("catalog", run="c", image="shop/catalog:1")
mesh.service("frontend", run="f", upstreams=["catalog"], image="shop/frontend:1")
mesh.service("reviews", run="r", image="shop/reviews:1")
mesh.gateway(port=8080, routes={{"/": "frontend"}})
"""


def export(tmp_path: pathlib.Path, mode: str, body: str = "", **options: Any) -> Any:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(HEADER.format(mode=mode) + body, encoding="utf-8")
    return export_validated(meshfile, ExportOptions(base=str(tmp_path), **options))


def policies(exported: Any) -> dict[str, dict[str, Any]]:
    return {m.name: m.body for m in exported.manifests if m.kind == "AuthorizationPolicy"}


def test_each_policy_is_an_authorization_policy_with_istio_principals(
    tmp_path: pathlib.Path,
) -> None:
    exported = export(
        tmp_path,
        "open",
        'mesh.allow("catalog", source=["frontend", "gateway"], methods=["GET"],\n'
        '           paths=["/items", "/api/*"], headers={"x-env": "dev"}, not_headers={"x-env": "prod"})\n'
        'mesh.deny("catalog", namespaces=["shop", "other"], not_paths=["*.js"], name="edge",\n'
        '          source="spiffe://partner.example/ns/p/sa/x", ip_blocks=["10.0.0.0/8"])\n'
        'mesh.allow("reviews")\n',
        namespace="prod",
    )
    found = policies(exported)
    assert found["allow-catalog-1"]["apiVersion"] == "security.istio.io/v1"
    assert found["allow-catalog-1"]["metadata"]["namespace"] == "prod"
    assert (
        found["allow-catalog-1"]["metadata"]["annotations"]["meshkit.dev/origin"] == "Meshfile.py:8"
    )
    assert found["allow-catalog-1"]["spec"] == {
        "selector": {"matchLabels": {"app": "catalog"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [
                    {
                        "source": {
                            "principals": [
                                "cluster.local/ns/prod/sa/frontend",
                                "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
                            ]
                        }
                    }
                ],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/items", "/api/*"]}}],
                "when": [
                    {"key": "request.headers[x-env]", "values": ["dev"], "notValues": ["prod"]}
                ],
            }
        ],
    }
    assert found["edge"]["spec"]["action"] == "DENY"
    assert found["edge"]["spec"]["rules"] == [
        {
            "from": [
                {
                    "source": {
                        "principals": ["partner.example/ns/p/sa/x"],
                        "namespaces": ["prod", "other"],
                        "remoteIpBlocks": ["10.0.0.0/8"],
                    }
                }
            ],
            "to": [{"operation": {"notPaths": ["*.js"]}}],
        }
    ]
    assert found["allow-reviews-2"]["spec"]["rules"] == [{}]
    assert any("remoteIpBlocks" in finding.instead for finding in exported.findings)


def test_default_deny_is_the_allow_nothing_policy(tmp_path: pathlib.Path) -> None:
    found = policies(export(tmp_path, "deny"))
    assert found == {
        "allow-nothing": {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": found["allow-nothing"]["metadata"],
            "spec": {},
        }
    }


def test_upstreams_mode_allows_the_declared_callers(tmp_path: pathlib.Path) -> None:
    found = policies(export(tmp_path, "upstreams"))
    assert found["declared-upstreams-catalog"]["spec"]["rules"] == [
        {"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/frontend"]}}]}
    ]
    assert found["declared-upstreams-frontend"]["spec"]["rules"] == [
        {
            "from": [
                {
                    "source": {
                        "principals": [
                            "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
                        ]
                    }
                }
            ]
        }
    ]
    reviews = found["declared-upstreams-reviews"]["spec"]
    assert reviews == {"selector": {"matchLabels": {"app": "reviews"}}, "action": "ALLOW"}


def test_jwt_conditions_become_request_principals_and_claims(tmp_path: pathlib.Path) -> None:
    (tmp_path / "jwks.json").write_text(
        '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",'
        ' "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",'
        ' "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
    )
    exported = export(
        tmp_path,
        "open",
        'mesh.request_authentication(issuer="https://auth.example", jwks="jwks.json",\n'
        '                            audiences="shop")\n'
        'mesh.allow("catalog", request_principals="*", not_request_principals="https://a/b",\n'
        '           claims={"groups": ["admin"]}, not_claims={"level": "0"})\n',
    )
    (authentication,) = [m.body for m in exported.manifests if m.kind == "RequestAuthentication"]
    assert authentication["metadata"]["name"] == "request-authentication"
    assert authentication["spec"] == {
        "jwtRules": [
            {
                "issuer": "https://auth.example",
                "audiences": ["shop"],
                "jwks": (tmp_path / "jwks.json").read_text(),
                "forwardOriginalToken": True,
            }
        ]
    }
    (rule,) = policies(exported)["allow-catalog-1"]["spec"]["rules"]
    assert rule == {
        "from": [{"source": {"requestPrincipals": ["*"], "notRequestPrincipals": ["https://a/b"]}}],
        "when": [
            {"key": "request.auth.claims[groups]", "values": ["admin"]},
            {"key": "request.auth.claims[level]", "notValues": ["0"]},
        ],
    }
