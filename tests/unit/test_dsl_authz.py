"""Authorization in a Meshfile: the verbs, FILE:LINE problems, the compiled policies."""

from __future__ import annotations

import json
import pathlib

import pytest

from meshkit.api.authz import AuthzPolicy, AuthzRule, HeaderCondition
from meshkit.dsl import evaluate_in_process
from meshkit.dsl.convert import spec_from_json, spec_to_json
from meshkit.dsl.spec import MeshSpec
from meshkit.registry.authz import authorization_policies

FRONTEND = "spiffe://meshkit.local/ns/shop/sa/frontend"
GATEWAY = "spiffe://meshkit.local/ns/shop/sa/gateway"


def header(mode: str = "open") -> str:
    return (
        "from meshkit import *\n"
        f"mesh = Mesh('shop', authorization={mode!r})\n"
        "mesh.service('catalog', run='c')\n"
        "mesh.service('frontend', run='f', upstreams=['catalog'])\n"
        "mesh.service('reviews', run='r')\n"
    )


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spec_of(directory: pathlib.Path, body: str, mode: str = "open") -> MeshSpec:
    (directory / "Meshfile.py").write_text(header(mode) + body)
    result = evaluate_in_process("Meshfile.py")
    assert [str(problem) for problem in result.problems] == []
    assert result.spec is not None
    return result.spec


def problems_of(directory: pathlib.Path, body: str, mode: str = "open") -> list[str]:
    (directory / "Meshfile.py").write_text(header(mode) + body)
    result = evaluate_in_process("Meshfile.py")
    assert result.spec is None
    return [str(problem) for problem in result.problems]


def test_allow_and_deny_compile_to_policies_with_spiffe_ids(in_tmp: pathlib.Path) -> None:
    spec = spec_of(
        in_tmp,
        "mesh.allow('catalog', source='frontend', methods=['GET'], paths=['/items', '/api/*'],\n"
        "           headers={'X-Env': 'dev'}, not_headers={'x-env': ['prod']})\n"
        "mesh.deny('catalog', source=['gateway', 'spiffe://other.example/x'], name='edge')\n"
        "mesh.allow('catalog', namespaces='shop', ip_blocks=['10.0.0.0/8'], not_paths=['*.js'])\n",
    )
    assert spec_from_json(spec_to_json(spec)) == spec
    assert "allow-catalog-1" in json.dumps(json.loads(spec_to_json(spec)))
    allow, deny, second = authorization_policies(spec)
    assert allow == AuthzPolicy(
        name="allow-catalog-1",
        service="catalog",
        action="ALLOW",
        rules=(
            AuthzRule(
                principals=(FRONTEND,),
                methods=("GET",),
                paths=("/items", "/api/*"),
                headers=(HeaderCondition(name="x-env", values=("dev",), not_values=("prod",)),),
            ),
        ),
        origin="Meshfile.py:6",
    )
    assert deny.name == "edge" and deny.action == "DENY" and deny.origin == "Meshfile.py:8"
    assert deny.rules[0].principals == (GATEWAY, "spiffe://other.example/x")
    assert second.name == "allow-catalog-2"
    assert second.rules[0].namespaces == ("shop",)
    assert second.rules[0].ip_blocks == ("10.0.0.0/8",)


def test_every_mistake_is_reported_at_its_line(in_tmp: pathlib.Path) -> None:
    problems = problems_of(
        in_tmp,
        "mesh.allow('catalgo', source='frontend')\n"
        "mesh.allow('catalog', source='frontnd')\n"
        "mesh.deny('catalog', paths=['items', '/a*b'])\n"
        "mesh.deny('catalog', ip_blocks=['10.0.0.0/33'])\n"
        "mesh.allow('catalog', methods=['get'], headers={'x': ''})\n"
        "mesh.allow('catalog', source='spiffe://Bad Domain/x', namespaces=['Shop'])\n"
        "mesh.allow('catalog', source=42)\n",
        mode="upstream",
    )
    text = "\n".join(problems)
    assert "Meshfile.py:2: Mesh(...): authorization 'upstream' is not one of" in text
    assert "(did you mean 'upstreams'?)" in text
    assert (
        "Meshfile.py:6: allow 'catalgo': 'catalgo' is not a service in this mesh (did you mean 'catalog'?)"
        in text
    )
    assert "Meshfile.py:7: allow 'catalog': source 'frontnd' is not a service of this mesh" in text
    assert "(did you mean 'frontend'?)" in text
    assert "Meshfile.py:8: deny 'catalog': paths 'items' is not a path pattern" in text
    assert "Meshfile.py:8: deny 'catalog': paths '/a*b' is not a path pattern" in text
    assert (
        "Meshfile.py:9: deny 'catalog': ip_blocks '10.0.0.0/33' is not an IP address or CIDR"
        in text
    )
    assert (
        "Meshfile.py:10: allow 'catalog': methods 'get' is not an upper-case HTTP method (did you mean 'GET'?)"
        in text
    )
    assert "Meshfile.py:10: allow 'catalog': headers 'x': '' is not a pattern" in text
    assert (
        "Meshfile.py:11: allow 'catalog': source 'spiffe://Bad Domain/x' is not a SPIFFE ID" in text
    )
    assert "Meshfile.py:11: allow 'catalog': namespaces 'Shop' is not a mesh name" in text
    assert (
        "Meshfile.py:12: mesh.allow(...): source must be a string or a list of strings, got 42"
        in text
    )


def test_two_policies_of_one_name_on_one_service(in_tmp: pathlib.Path) -> None:
    problems = problems_of(
        in_tmp, "mesh.allow('catalog', name='p')\nmesh.deny('catalog', name='p')\n"
    )
    assert problems == [
        "Meshfile.py:7: deny 'catalog': a second policy named 'p' (the first is at line 6); "
        "give each its own name="
    ]


def test_default_deny_gives_every_service_an_allow_nothing_policy(in_tmp: pathlib.Path) -> None:
    spec = spec_of(in_tmp, "mesh.allow('catalog', source='reviews')\n", mode="deny")
    policies = authorization_policies(spec)
    assert [(p.service, p.name, p.rules) for p in policies[1:]] == [
        ("catalog", "default-deny", ()),
        ("frontend", "default-deny", ()),
        ("reviews", "default-deny", ()),
    ]
    assert policies[1].origin == "Meshfile.py:2"


def test_upstreams_mode_allows_exactly_the_declared_callers(in_tmp: pathlib.Path) -> None:
    spec = spec_of(in_tmp, "mesh.gateway(port=0, routes={'/': 'frontend'})\n", mode="upstreams")
    rules = {p.service: p.rules for p in authorization_policies(spec)}
    assert rules == {
        "catalog": (AuthzRule(principals=(FRONTEND,)),),
        "frontend": (AuthzRule(principals=(GATEWAY,)),),
        "reviews": (),
    }


def test_meshkit_check_and_spec(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meshkit.cli import main

    (in_tmp / "Meshfile.py").write_text(header() + "mesh.deny('catalog', paths=['/a*b'])\n")
    assert main(["check", "-f", "Meshfile.py"]) == 1
    assert (
        "Meshfile.py:6: deny 'catalog': paths '/a*b' is not a path pattern"
        in capsys.readouterr().err
    )
    (in_tmp / "Meshfile.py").write_text(header("deny") + "mesh.deny('catalog', paths=['/a*'])\n")
    assert main(["check", "-f", "Meshfile.py"]) == 0
    capsys.readouterr()
    assert main(["spec", "-f", "Meshfile.py"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["authorization"] == "deny"
    assert shown["authz"][0]["name"] == "deny-catalog-1"
    assert shown["authz"][0]["rule"]["paths"] == ["/a*"]


JWKS = (
    '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",'
    ' "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",'
    ' "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
)


def test_request_authentication_and_claims_compile_for_every_sidecar(
    in_tmp: pathlib.Path,
) -> None:
    (in_tmp / "keys").mkdir()
    (in_tmp / "keys" / "jwks.json").write_text(JWKS)
    spec = spec_of(
        in_tmp,
        "mesh.request_authentication(issuer='https://auth.example', audiences='shop',\n"
        "                            jwks='keys/jwks.json')\n"
        "mesh.allow('catalog', request_principals='*', claims={'Role': ['admin', 'ops*']})\n",
    )
    assert spec_from_json(spec_to_json(spec)) == spec
    (jwt,) = spec.request_authentication
    assert jwt.rule.issuer == "https://auth.example" and jwt.rule.audiences == ("shop",)
    assert jwt.rule.jwks == JWKS and jwt.origin.line == 6
    (policy,) = authorization_policies(spec)
    assert policy.rules == (
        AuthzRule(
            request_principals=("*",),
            claims=(HeaderCondition(name="Role", values=("admin", "ops*")),),
        ),
    )


def test_request_authentication_mistakes_are_reported_at_their_line(
    in_tmp: pathlib.Path,
) -> None:
    (in_tmp / "bad.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    (in_tmp / "good.json").write_text(JWKS)
    found = problems_of(
        in_tmp,
        "mesh.request_authentication(issuer='https://a', jwks='missing.json')\n"
        "mesh.request_authentication(issuer='https://b', jwks='bad.json')\n"
        "mesh.request_authentication(issuer='', jwks='good.json', audiences=[3])\n"
        "mesh.request_authentication(issuer='https://c', jwks='good.json')\n"
        "mesh.request_authentication(issuer='https://c', jwks='good.json')\n"
        "mesh.allow('catalog', claims={'role': 'a**'}, request_principals=[''])\n",
    )
    assert any(p.startswith("Meshfile.py:6: ") and "cannot read" in p for p in found), found
    assert any(p.startswith("Meshfile.py:7: ") and "symmetric 'oct'" in p for p in found), found
    assert any(p.startswith("Meshfile.py:8: ") and "must not be empty" in p for p in found)
    assert any(p.startswith("Meshfile.py:8: ") and "audiences entries" in p for p in found)
    assert any(p.startswith("Meshfile.py:10: ") and "already has a rule (line 9)" in p for p in found)
    assert any(p.startswith("Meshfile.py:11: ") and "claims 'role'" in p for p in found), found
    assert any(p.startswith("Meshfile.py:11: ") and "request_principals ''" in p for p in found)


def test_claims_without_request_authentication_are_a_mistake(in_tmp: pathlib.Path) -> None:
    found = problems_of(in_tmp, "mesh.allow('catalog', request_principals='*')\n")
    assert found == [
        "Meshfile.py:6: allow 'catalog': request_principals/claims speak of a verified JWT, "
        "but the mesh has no mesh.request_authentication(...)"
    ]
