"""The authorization decision (Istio's AuthorizationPolicy semantics), without sockets."""

from __future__ import annotations

import pytest

from meshkit.api.authz import (
    AuthzPolicy,
    AuthzRule,
    HeaderCondition,
    cidr_problem,
    path_pattern_problem,
    pattern_matches,
    pattern_problem,
)
from meshkit.ca.spiffe import mesh_peer_problem
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.policy.authz import (
    Allowed,
    Denied,
    RequestFacts,
    check_request,
    decide,
    gateway_decides,
    rule_matches,
)

FRONTEND = "spiffe://meshkit.local/ns/shop/sa/frontend"
REVIEWS = "spiffe://meshkit.local/ns/shop/sa/reviews"
GATEWAY = "spiffe://meshkit.local/ns/shop/sa/gateway"
OTHER_MESH = "spiffe://meshkit.local/ns/other/sa/frontend"


def facts(
    principal: str | None = FRONTEND,
    method: str = "GET",
    path: str = "/items",
    headers: dict[str, str] | None = None,
    **extra: object,
) -> RequestFacts:
    pairs = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return RequestFacts(method=method, path=path, headers=pairs, principal=principal, **extra)  # type: ignore[arg-type]


def allow(*rules: AuthzRule, name: str = "allow-catalog-1") -> AuthzPolicy:
    return AuthzPolicy(
        name=name, service="catalog", action="ALLOW", rules=rules, origin="Meshfile.py:9"
    )


def deny(*rules: AuthzRule, name: str = "deny-catalog-1") -> AuthzPolicy:
    return AuthzPolicy(
        name=name, service="catalog", action="DENY", rules=rules, origin="Meshfile.py:12"
    )


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*", "/anything", True),
        ("/api/*", "/api/v1", True),
        ("/api/*", "/apix", False),
        ("*.js", "/static/app.js", True),
        ("*.js", "/static/app.css", False),
        ("/items", "/items", True),
        ("/items", "/items/1", False),
        ("/items*", "/items/1", True),
    ],
)
def test_istio_string_patterns(pattern: str, value: str, expected: bool) -> None:
    assert pattern_problem(pattern) is None
    assert pattern_matches(pattern, value) is expected


@pytest.mark.parametrize("pattern", ["", "/a*b", "*a*", "/**", "**"])
def test_bad_patterns_say_why(pattern: str) -> None:
    assert pattern_problem(pattern) is not None


def test_a_path_pattern_starts_with_a_slash_or_a_star() -> None:
    assert path_pattern_problem("items") is not None
    assert path_pattern_problem("/items") is None
    assert path_pattern_problem("*.css") is None


def test_cidr_problems() -> None:
    assert cidr_problem("10.0.0.0/8") is None
    assert cidr_problem("::1") is None
    assert cidr_problem("10.0.0.0/33") is not None
    assert cidr_problem("localhost") is not None


def test_no_policy_allows_everything() -> None:
    assert decide(facts(), ()) == Allowed()


def test_an_allow_policy_denies_what_it_does_not_allow() -> None:
    policies = [allow(AuthzRule(principals=(FRONTEND,)))]
    assert decide(facts(FRONTEND), policies) == Allowed()
    denied = decide(facts(REVIEWS), policies)
    assert isinstance(denied, Denied)
    assert denied.policy == "allow-catalog-1" and denied.origin == "Meshfile.py:9"
    assert "'reviews'" in denied.reason and "matches no ALLOW policy" in denied.reason
    assert "Meshfile.py:9" in denied.reason


def test_an_allow_policy_without_rules_allows_nothing() -> None:
    assert isinstance(decide(facts(), [allow()]), Denied)


def test_an_empty_rule_matches_everything() -> None:
    assert decide(facts(None), [allow(AuthzRule())]) == Allowed()
    assert isinstance(decide(facts(), [deny(AuthzRule())]), Denied)


def test_deny_comes_before_allow() -> None:
    policies = [allow(AuthzRule()), deny(AuthzRule(methods=("DELETE",)))]
    assert decide(facts(method="GET"), policies) == Allowed()
    denied = decide(facts(method="DELETE"), policies)
    assert isinstance(denied, Denied) and denied.policy == "deny-catalog-1"
    assert "denied by policy 'deny-catalog-1' (Meshfile.py:12)" in denied.reason


def test_a_deny_policy_alone_allows_the_rest() -> None:
    policies = [deny(AuthzRule(principals=(REVIEWS,)))]
    assert decide(facts(FRONTEND), policies) == Allowed()
    assert isinstance(decide(facts(REVIEWS), policies), Denied)


def test_any_allow_policy_may_allow() -> None:
    policies = [
        allow(AuthzRule(principals=(FRONTEND,)), name="a"),
        allow(AuthzRule(principals=(REVIEWS,)), name="b"),
    ]
    assert decide(facts(REVIEWS), policies) == Allowed()
    assert isinstance(decide(facts(GATEWAY), policies), Denied)


@pytest.mark.parametrize(
    ("rule", "request_facts", "expected"),
    [
        (AuthzRule(principals=(FRONTEND,)), facts(FRONTEND), True),
        (AuthzRule(principals=(FRONTEND,)), facts(None), False),
        (AuthzRule(not_principals=(REVIEWS,)), facts(FRONTEND), True),
        (AuthzRule(not_principals=(REVIEWS,)), facts(REVIEWS), False),
        (AuthzRule(namespaces=("shop",)), facts(REVIEWS), True),
        (AuthzRule(namespaces=("shop",)), facts(OTHER_MESH), False),
        (AuthzRule(namespaces=("shop",)), facts("spiffe://evil.example/x"), False),
        (AuthzRule(not_namespaces=("other",)), facts(OTHER_MESH), False),
        (AuthzRule(methods=("GET", "HEAD")), facts(method="HEAD"), True),
        (AuthzRule(methods=("GET",)), facts(method="POST"), False),
        (AuthzRule(not_methods=("DELETE",)), facts(method="POST"), True),
        (AuthzRule(paths=("/items",)), facts(path="/items"), True),
        (AuthzRule(paths=("/items",)), facts(path="/items/2"), False),
        (AuthzRule(paths=("/api/*",)), facts(path="/api/x"), True),
        (AuthzRule(paths=("*.js",)), facts(path="/a/b.js"), True),
        (AuthzRule(paths=("*",)), facts(path="/"), True),
        (AuthzRule(not_paths=("/admin*",)), facts(path="/admin/x"), False),
        (AuthzRule(methods=("GET",), paths=("/items",)), facts(method="GET", path="/x"), False),
    ],
)
def test_each_matcher_kind(rule: AuthzRule, request_facts: RequestFacts, expected: bool) -> None:
    assert rule_matches(rule, request_facts) is expected


@pytest.mark.parametrize(
    ("condition", "headers", "expected"),
    [
        (HeaderCondition(name="x-env", values=("dev",)), {"x-env": "dev"}, True),
        (HeaderCondition(name="x-env", values=("dev",)), {"x-env": "prod"}, False),
        (HeaderCondition(name="x-env", values=("dev",)), {}, False),
        (HeaderCondition(name="x-env", values=("*",)), {"x-env": "any"}, True),
        (HeaderCondition(name="x-env", values=("*",)), {}, False),
        (HeaderCondition(name="x-env", values=("de*",)), {"x-env": "dev"}, True),
        (HeaderCondition(name="x-env", not_values=("prod",)), {"x-env": "dev"}, True),
        (HeaderCondition(name="x-env", not_values=("prod",)), {"x-env": "prod"}, False),
        (HeaderCondition(name="x-env", not_values=("prod",)), {}, True),
    ],
)
def test_header_conditions(
    condition: HeaderCondition, headers: dict[str, str], expected: bool
) -> None:
    assert rule_matches(AuthzRule(headers=(condition,)), facts(headers=headers)) is expected


def test_client_address_rules_are_decided_where_the_gateway_sees_the_client() -> None:
    local_only = [allow(AuthzRule(ip_blocks=("127.0.0.0/8",)))]
    assert gateway_decides(local_only)
    assert not gateway_decides([allow(AuthzRule(principals=(FRONTEND,)))])
    at_gateway = facts(GATEWAY, client_address="127.0.0.1")
    assert decide(at_gateway, local_only) == Allowed()
    assert isinstance(decide(facts(GATEWAY, client_address="10.1.2.3"), local_only), Denied)
    # The inbound sidecar behind the gateway: the gateway settled the address.
    assert decide(facts(GATEWAY, behind_gateway=True), local_only) == Allowed()
    # Any other caller did not come through the gateway: the address rule does not hold.
    assert isinstance(decide(facts(FRONTEND), local_only), Denied)


def test_client_address_deny_rules() -> None:
    block = [deny(AuthzRule(ip_blocks=("10.0.0.0/8",)))]
    assert isinstance(decide(facts(GATEWAY, client_address="10.9.9.9"), block), Denied)
    assert decide(facts(GATEWAY, client_address="127.0.0.1"), block) == Allowed()
    assert decide(facts(GATEWAY, behind_gateway=True), block) == Allowed()
    assert decide(facts(FRONTEND), block) == Allowed()
    outside = [deny(AuthzRule(not_ip_blocks=("127.0.0.0/8",)))]
    assert isinstance(decide(facts(GATEWAY, client_address="192.168.1.1"), outside), Denied)
    assert decide(facts(GATEWAY, client_address="127.0.0.1"), outside) == Allowed()


def test_a_caller_without_a_certificate_is_named_so() -> None:
    denied = decide(facts(None), [allow(AuthzRule(principals=(FRONTEND,)))])
    assert isinstance(denied, Denied)
    assert "without a mesh certificate" in denied.reason


@pytest.mark.parametrize(
    ("identity", "problem"),
    [
        (FRONTEND, None),
        (GATEWAY, None),
        ("spiffe://evil.example/ns/shop/sa/frontend", "trust domain 'evil.example'"),
        (OTHER_MESH, "belongs to mesh 'other', not 'shop'"),
        ("spiffe://meshkit.local/ns/shop/sa/ghost", "names no service of mesh 'shop'"),
        ("spiffe://meshkit.local/elsewhere", "not a meshkit workload identity"),
    ],
)
def test_only_members_of_the_mesh_may_connect(identity: str, problem: str | None) -> None:
    found = mesh_peer_problem(identity, mesh="shop", services={"frontend", "catalog", "gateway"})
    assert found is None if problem is None else problem in (found or "")


def _config(*policies: AuthzPolicy) -> ProxyConfig:
    return ProxyConfig(
        version=1, mesh="shop", instance="catalog-0", service="catalog", authorization=policies
    )


def _check(config: ProxyConfig, *, at_gateway: bool, identity: str | None) -> Denied | None:
    return check_request(
        config,
        service="catalog",
        at_gateway=at_gateway,
        method=b"GET",
        target=b"/items?q=1",
        headers=[],
        identity=identity,
        client_address="10.0.0.1",
        now=0.0,
    )


def test_the_inbound_sidecar_decides_from_the_verified_identity_only() -> None:
    config = _config(allow(AuthzRule(principals=(FRONTEND,), paths=("/items",))))
    assert _check(config, at_gateway=False, identity=FRONTEND) is None
    denied = _check(config, at_gateway=False, identity=REVIEWS)
    assert denied is not None and denied.reason.startswith("GET /items from 'reviews'")
    # The gateway leaves rules without client-address conditions to the inbound sidecar.
    assert _check(config, at_gateway=True, identity=None) is None
    assert _check(_config(), at_gateway=False, identity=None) is None


def test_the_gateway_decides_client_address_rules_as_itself() -> None:
    config = _config(allow(AuthzRule(principals=(GATEWAY,), ip_blocks=("127.0.0.0/8",))))
    assert _check(config, at_gateway=True, identity=None) is not None  # 10.0.0.1
    assert _check(config, at_gateway=False, identity=GATEWAY) is None  # behind the gateway
    assert _check(config, at_gateway=False, identity=FRONTEND) is not None
