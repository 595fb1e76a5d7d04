"""JWT request authentication without sockets: the verifier, and what policies make of it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshkit.api.authz import AuthzPolicy, AuthzRule, HeaderCondition
from meshkit.api.jwt import JwksError, JwtRule, jwks_keys
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.policy.authz import Allowed, RequestFacts, check_request, decide
from meshkit.proxy.policy.jwt import Authenticated, Unauthenticated, authenticate, verify
from tests.jwt_tokens import SigningKey, jwks, signed_token

ISSUER = "https://auth.example"
NOW = 1_800_000_000.0


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEYS = jwks(("rsa-1", RSA_KEY), ("ec-1", EC_KEY))
RULE = JwtRule(issuer=ISSUER, audiences=("shop",), jwks=KEYS, origin="Meshfile.py:7")


def token(
    claims: dict[str, object] | None = None,
    *,
    alg: str = "RS256",
    kid: str | None = "rsa-1",
    key: SigningKey = RSA_KEY,
) -> str:
    body = {"iss": ISSUER, "sub": "alice", "aud": "shop", "exp": NOW + 300, **(claims or {})}
    return signed_token(body, alg=alg, kid=kid, key=key)


def test_a_good_rs256_and_es256_token_are_verified() -> None:
    found = verify(token({"role": "admin"}), [RULE], now=NOW)
    assert isinstance(found, Authenticated)
    assert found.principal == f"{ISSUER}/alice" and found.claims["role"] == "admin"
    found = verify(token(alg="ES256", kid="ec-1", key=EC_KEY), [RULE], now=NOW)
    assert isinstance(found, Authenticated)
    # Without a kid, every key of the issuer is tried.
    assert isinstance(verify(token(kid=None), [RULE], now=NOW), Authenticated)


@pytest.mark.parametrize(
    ("made", "reason"),
    [
        (lambda: token({"exp": NOW - 61}), "expired 61s ago"),
        (lambda: token({"nbf": NOW + 120}), "not valid for another 120s"),
        (lambda: token({"aud": ["billing", "ads"]}), "audience ['billing', 'ads'] is not one of"),
        (lambda: token({"iss": "https://evil.example"}), "issuer 'https://evil.example' is not"),
        (lambda: token(key=OTHER_RSA), "signature does not verify"),
        (lambda: token(alg="ES256", kid="rsa-1", key=EC_KEY), "signature does not verify"),
        (lambda: token(alg="none", key=b""), "alg 'none' is refused"),
        # HMAC with the public key as the secret: the classic confusion attack.
        (lambda: token(alg="HS256", key=KEYS.encode()), "alg 'HS256' is refused"),
        (lambda: token(kid="rotated-away"), "kid 'rotated-away' is not a key"),
        (lambda: token({"exp": "tomorrow"}), "'exp' is not a number"),
        (lambda: "not-a-jwt", "not a JWS"),
        (lambda: "e30.!!!.sig", "payload is not base64url JSON"),
    ],
)
def test_a_bad_token_is_refused_with_its_reason(made: object, reason: str) -> None:
    assert callable(made)
    found = verify(made(), [RULE], now=NOW)
    assert isinstance(found, Unauthenticated), found
    assert reason in found.reason


@pytest.mark.parametrize("alg", ["RS384", "RS512", "ES384"])
def test_the_other_algorithms_verify_and_a_mismatched_curve_does_not(alg: str) -> None:
    key: SigningKey = ec.generate_private_key(ec.SECP384R1()) if alg == "ES384" else RSA_KEY
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    rule = JwtRule(issuer=ISSUER, jwks=jwks(("k", key)))
    claims = {"iss": ISSUER, "sub": "bob", "exp": NOW + 60}
    assert isinstance(
        verify(signed_token(claims, key=key, alg=alg), [rule], now=NOW), Authenticated
    )
    # ES256 with a P-384 key, or RS256 claimed over an RS512 signature: refused.
    wrong = signed_token(claims, key=key, alg=alg).split(".")
    forged = signed_token(claims, key=key, alg="ES256" if alg == "ES384" else "RS256").split(".")
    assert isinstance(
        verify(".".join([forged[0], wrong[1], wrong[2]]), [rule], now=NOW), Unauthenticated
    )


def test_the_leeway_forgives_a_minute_of_clock_skew() -> None:
    assert isinstance(verify(token({"exp": NOW - 59}), [RULE], now=NOW), Authenticated)
    assert isinstance(verify(token({"nbf": NOW + 59}), [RULE], now=NOW), Authenticated)
    # Without audiences in the rule, aud is not checked.
    free = JwtRule(issuer=ISSUER, jwks=KEYS)
    assert isinstance(verify(token({"aud": "other"}), [free], now=NOW), Authenticated)


def test_only_a_bearer_token_is_authenticated() -> None:
    assert authenticate([RULE], [(b"authorization", b"Basic YTpi")], now=NOW) is None
    assert authenticate([RULE], [], now=NOW) is None
    assert authenticate([], [(b"authorization", b"Bearer x")], now=NOW) is None
    found = authenticate([RULE], [(b"authorization", f"Bearer {token()}".encode())], now=NOW)
    assert isinstance(found, Authenticated)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{", "not JSON"),
        ('{"keys": []}', "at least one key"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric 'oct' keys are refused"),
        ('{"keys": [{"kty": "RSA", "n": "AQAB"}]}', "keys[0]: 'e' is missing"),
        ('{"keys": [{"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}]}', "not a point"),
    ],
)
def test_a_bad_key_set_is_named(document: str, problem: str) -> None:
    with pytest.raises(JwksError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        jwks_keys(document)


def _policy(action: str, rule: AuthzRule) -> AuthzPolicy:
    return AuthzPolicy(name="p", service="catalog", action=action, rules=(rule,), origin="M:3")  # type: ignore[arg-type]


def test_policies_match_request_principals_and_claims() -> None:
    def allowed(facts: RequestFacts, action: str, rule: AuthzRule) -> bool:
        return isinstance(decide(facts, [_policy(action, rule)]), Allowed)

    anonymous = RequestFacts(method="GET", path="/")
    alice = RequestFacts(
        method="GET",
        path="/",
        request_principal=f"{ISSUER}/alice",
        claims={"groups": ["staff", "admin"], "level": 3},
    )
    # request_principals=["*"] requires a token (a request without one has no principal).
    assert allowed(alice, "ALLOW", AuthzRule(request_principals=("*",)))
    assert not allowed(anonymous, "ALLOW", AuthzRule(request_principals=("*",)))
    assert not allowed(alice, "ALLOW", AuthzRule(request_principals=(f"{ISSUER}/bob",)))
    assert allowed(alice, "ALLOW", AuthzRule(not_request_principals=(f"{ISSUER}/bob",)))
    admins = AuthzRule(claims=(HeaderCondition(name="groups", values=("admin",)),))
    assert allowed(alice, "ALLOW", admins)
    assert not allowed(anonymous, "ALLOW", admins)
    level = AuthzRule(claims=(HeaderCondition(name="level", values=("3",)),))
    assert not allowed(alice, "DENY", level)
    assert allowed(anonymous, "DENY", level)
    not_staff = AuthzRule(claims=(HeaderCondition(name="groups", not_values=("staff",)),))
    assert not allowed(alice, "ALLOW", not_staff)


def test_check_request_refuses_a_bad_token_with_401_and_passes_the_claims() -> None:
    policy = _policy("ALLOW", AuthzRule(claims=(HeaderCondition(name="role", values=("admin",)),)))
    config = ProxyConfig(
        version=1,
        mesh="shop",
        instance="catalog-0",
        service="catalog",
        authorization=(policy,),
        request_authentication=(RULE,),
    )

    def check(bearer: str | None, *, at_gateway: bool = False) -> tuple[int, str] | None:
        headers = [] if bearer is None else [(b"authorization", f"Bearer {bearer}".encode())]
        denied = check_request(
            config,
            service="catalog",
            at_gateway=at_gateway,
            method=b"GET",
            target=b"/",
            headers=headers,
            identity=None,
            client_address=None,
            now=NOW,
        )
        return None if denied is None else (denied.status, denied.flag)

    assert check(token({"role": "admin"})) is None
    assert check(token({"role": "user"})) == (403, "RBAC")
    assert check(None) == (403, "RBAC")
    assert check(token({"exp": NOW - 3600})) == (401, "JWT")
    # The gateway refuses a bad token even where only the inbound sidecar decides policy.
    assert check(token(key=OTHER_RSA), at_gateway=True) == (401, "JWT")
    assert check(token({"role": "user"}), at_gateway=True) is None


def test_a_verified_token_still_expires_on_time() -> None:
    """The signature check is remembered per token; the clock is read on every request."""
    once = token({"exp": NOW + 100})
    assert isinstance(verify(once, [RULE], now=NOW), Authenticated)
    later = verify(once, [RULE], now=NOW + 200)
    assert isinstance(later, Unauthenticated) and "expired 100s ago" in later.reason
    # Another key set for the same issuer is another verdict (keys were rotated away).
    rotated = JwtRule(issuer=ISSUER, audiences=("shop",), jwks=jwks(("ec-1", EC_KEY)))
    assert isinstance(verify(once, [rotated], now=NOW), Unauthenticated)
