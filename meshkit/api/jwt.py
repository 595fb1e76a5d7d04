"""Request authentication by JWT (Istio's RequestAuthentication, in small): the rules, the keys.

A ``JwtRule`` accepts the tokens of one ``issuer`` signed by a key of its JWKS
(RFC 7517, read from a local file) and, when ``audiences`` are given, meant
for one of them.  ``meshkit.proxy.policy.jwt`` verifies a request's bearer
token against the rules; this module only reads key sets (pure, shared by the
Meshfile's check and the sidecar).
"""

from __future__ import annotations

import base64
import functools
import json
from typing import NamedTuple

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}


@attrs.frozen(kw_only=True)
class JwtRule:
    """Tokens of ``issuer``, signed by a key of ``jwks`` (the JWKS document as JSON text)."""

    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str = '{"keys": []}'
    origin: str = ""  # FILE:LINE of the Meshfile's declaration


class Jwk(NamedTuple):
    """One public key of a key set: its ``kid`` (if any) and the key (not config: derived)."""

    kid: str | None
    key: PublicKey


class JwksError(ValueError):
    """A key set that is not one (the message says which key and why)."""


def b64url_decode(text: str) -> bytes:
    """Base64url without padding (JOSE's encoding); ValueError when it is not."""
    if not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _integer(jwk: dict[str, object], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JwksError(f"'{name}' is missing (a base64url string)")
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except ValueError as error:
        raise JwksError(f"'{name}' is not base64url") from error


def _public_key(jwk: dict[str, object]) -> PublicKey:
    kty = jwk.get("kty")
    if kty == "RSA":
        return rsa.RSAPublicNumbers(_integer(jwk, "e"), _integer(jwk, "n")).public_key()
    if kty == "EC":
        curve = CURVES.get(str(jwk.get("crv")))
        if curve is None:
            raise JwksError(f"curve {jwk.get('crv')!r} is not one of {', '.join(CURVES)}")
        try:
            numbers = ec.EllipticCurvePublicNumbers(_integer(jwk, "x"), _integer(jwk, "y"), curve)
            return numbers.public_key()
        except ValueError as error:
            raise JwksError(f"not a point of {jwk.get('crv')}") from error
    raise JwksError(
        f"kty {kty!r} is not a public key type meshkit verifies ('RSA' or 'EC'; "
        "symmetric 'oct' keys are refused: a key set is public)"
    )


@functools.lru_cache(maxsize=32)
def jwks_keys(text: str) -> tuple[Jwk, ...]:
    """The public keys of a JWKS document; ``JwksError`` names the first bad key."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise JwksError(f"not JSON ({error})") from error
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise JwksError('a JWKS is a JSON object {"keys": [...]} with at least one key')
    found = []
    for index, jwk in enumerate(keys):
        if not isinstance(jwk, dict):
            raise JwksError(f"keys[{index}] is not a JSON object")
        kid = jwk.get("kid")
        try:
            found.append(Jwk(kid=kid if isinstance(kid, str) else None, key=_public_key(jwk)))
        except JwksError as error:
            raise JwksError(f"keys[{index}]: {error}") from error
    return tuple(found)
