"""Verifying a request's bearer token against the mesh's JWT rules; pure, clock injected.

Istio's RequestAuthentication semantics: a request without a token passes
(authorization decides, e.g. ``request_principals=["*"]`` requires one); a
request whose token is invalid for every rule -- malformed, an issuer no rule
names, an unknown ``kid``, a bad signature, expired or not yet valid (with
``LEEWAY`` seconds of clock skew, Envoy's default), or meant for another
audience -- is refused with 401 and flag ``JWT`` (meshkit's; Envoy records
``jwt_authn_access_denied`` in its response details).  Only asymmetric
signatures are accepted: ``alg: none`` and HMAC (which would let anyone
holding the public key sign) are refused.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from meshkit.api.jwt import Jwk, JwksError, JwtRule, b64url_decode, jwks_keys
from meshkit.proxy.codec.messages import Headers
from meshkit.proxy.policy.matching import joined_header

JWT_FLAG = "JWT"
LEEWAY = 60.0
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384")


@attrs.frozen(kw_only=True)
class Authenticated:
    """A verified token: ``issuer/subject`` and its claims."""

    principal: str
    claims: Mapping[str, object]


@attrs.frozen(kw_only=True)
class Unauthenticated:
    """A token no rule accepts, and why (for the 401's body and the access log)."""

    reason: str
    origin: str = ""


class _Refused(Exception):
    pass


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None (no header, another scheme)."""
    value = joined_header(headers, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _json_part(part: str, what: str) -> dict[str, object]:
    try:
        value = json.loads(b64url_decode(part))
    except ValueError as error:
        raise _Refused(f"the token's {what} is not base64url JSON") from error
    if not isinstance(value, dict):
        raise _Refused(f"the token's {what} is not a JSON object")
    return value


def _signature_holds(alg: str, key: Jwk, signed: bytes, signature: bytes) -> bool:
    digest = _HASHES[alg[2:]]()
    try:
        if alg.startswith("RS") and isinstance(key.key, rsa.RSAPublicKey):
            key.key.verify(signature, signed, padding.PKCS1v15(), digest)
            return True
        if alg.startswith("ES") and isinstance(key.key, ec.EllipticCurvePublicKey):
            size = (key.key.curve.key_size + 7) // 8
            if len(signature) != 2 * size or key.key.curve.key_size != int(alg[2:]):
                return False
            r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            key.key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(digest))
            return True
    except InvalidSignature:
        return False
    return False


def _check_signature(header: Mapping[str, object], rule: JwtRule, signed: bytes, sig: str) -> None:
    alg = header.get("alg")
    if alg == "none" or (isinstance(alg, str) and alg.startswith("HS")):
        raise _Refused(f"alg {alg!r} is refused (only {', '.join(ALGORITHMS)} are accepted)")
    if alg not in ALGORITHMS:
        raise _Refused(f"alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
    try:
        keys = jwks_keys(rule.jwks)
        signature = b64url_decode(sig)
    except (JwksError, ValueError) as error:
        raise _Refused(f"cannot verify the signature ({error})") from error
    kid = header.get("kid")
    candidates = [key for key in keys if kid is None or key.kid == kid]
    if not candidates:
        raise _Refused(f"kid {kid!r} is not a key of the issuer's JWKS")
    if not any(_signature_holds(str(alg), key, signed, signature) for key in candidates):
        raise _Refused("the signature does not verify with the issuer's keys")


def _check_claims(claims: Mapping[str, object], rule: JwtRule, now: float) -> None:
    for name, late in (("exp", True), ("nbf", False)):
        value = claims.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Refused(f"'{name}' is not a number")
        if late and now > value + LEEWAY:
            raise _Refused(f"the token expired {now - value:.0f}s ago")
        if not late and now + LEEWAY < value:
            raise _Refused(f"the token is not valid for another {value - now:.0f}s (nbf)")
    if rule.audiences:
        aud = claims.get("aud")
        given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(rule.audiences) & {str(item) for item in given}:
            raise _Refused(f"audience {aud!r} is not one of {', '.join(rule.audiences)}")


def verify(token: str, rules: Sequence[JwtRule], *, now: float) -> Authenticated | Unauthenticated:
    """Whether one of ``rules`` accepts ``token`` at ``now`` (epoch seconds)."""
    signed = _signed(token, tuple(rules))
    if isinstance(signed, Unauthenticated):
        return signed
    claims, rule = signed
    try:
        _check_claims(claims, rule, now)
    except _Refused as refused:
        return Unauthenticated(reason=f"{refused} (issuer {rule.issuer!r})", origin=rule.origin)
    return Authenticated(principal=f"{rule.issuer}/{claims.get('sub', '')}", claims=claims)


@functools.lru_cache(maxsize=1024)
def _signed(
    token: str, rules: tuple[JwtRule, ...]
) -> tuple[Mapping[str, object], JwtRule] | Unauthenticated:
    """The claims of ``token`` and the rule whose key signed them, or why not.

    Cached: a client sends one token with many requests, and a signature check
    costs 70-170 us; what depends on the clock is checked on every request.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return Unauthenticated(reason="the bearer token is not a JWS (header.payload.signature)")
    try:
        header = _json_part(parts[0], "header")
        claims = _json_part(parts[1], "payload")
    except _Refused as refused:
        return Unauthenticated(reason=str(refused))
    issuer = claims.get("iss")
    rule = next((rule for rule in rules if rule.issuer == issuer), None)
    if rule is None:
        return Unauthenticated(reason=f"issuer {issuer!r} is not one the mesh accepts")
    try:
        _check_signature(header, rule, f"{parts[0]}.{parts[1]}".encode("ascii"), parts[2])
    except _Refused as refused:
        return Unauthenticated(reason=f"{refused} (issuer {issuer!r})", origin=rule.origin)
    return MappingProxyType(claims), rule


def authenticate(
    rules: Sequence[JwtRule], headers: Headers, *, now: float
) -> Authenticated | Unauthenticated | None:
    """The request's verified token, its refusal, or None (no rules, or no bearer token)."""
    if not rules:
        return None
    token = bearer_token(headers)
    return None if token is None else verify(token, rules, now=now)


def claim_values(claims: Mapping[str, object], name: str) -> list[str] | None:
    """A claim as strings to match (a list: each item; a number or bool: its JSON), or None."""
    value = claims.get(name)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, str) else json.dumps(item) for item in items]
