"""Signing JWTs and writing key sets for tests, with ``cryptography`` alone."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | bytes


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _number(value: int, size: int | None = None) -> str:
    return b64(value.to_bytes(size or (value.bit_length() + 7) // 8, "big"))


def jwks(*keys: tuple[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]) -> str:
    """A JWKS document of the public halves of ``(kid, private key)`` pairs."""
    found: list[dict[str, str]] = []
    for kid, key in keys:
        if isinstance(key, rsa.RSAPrivateKey):
            rsa_numbers = key.public_key().public_numbers()
            found.append(
                {"kty": "RSA", "kid": kid, "n": _number(rsa_numbers.n), "e": _number(rsa_numbers.e)}
            )
        else:
            ec_numbers = key.public_key().public_numbers()
            size = (key.curve.key_size + 7) // 8
            x, y = _number(ec_numbers.x, size), _number(ec_numbers.y, size)
            found.append(
                {"kty": "EC", "crv": f"P-{key.curve.key_size}", "kid": kid, "x": x, "y": y}
            )
    return json.dumps({"keys": found})


def signed_token(
    claims: dict[str, object], *, key: SigningKey, alg: str = "RS256", kid: str | None = None
) -> str:
    """A compact JWS of ``claims``: RS*, ES* (the key's curve), HS256 (``key`` bytes), ``none``."""
    header: dict[str, object] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if alg == "none":
        return f"{signed}."
    if isinstance(key, bytes):
        signature = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signed.encode(), padding.PKCS1v15(), _HASHES[alg[2:]])
    else:
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(signed.encode(), ec.ECDSA(_HASHES[alg[2:]])))
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return f"{signed}.{b64(signature)}"
