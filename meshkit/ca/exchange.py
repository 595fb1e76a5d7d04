"""The JSON bodies of a certificate request, shared by the control API and the sidecar.

Proposed endpoint (the control API's owner routes it; this module holds no I/O):
``POST /v1/instances/<instance>/certificate`` with either

* first certificate: ``{"csr": <PEM>, "token": <bootstrap token>}``, or
* renewal: ``{"csr": <PEM>, "certificate": <current cert PEM>, "proof": <base64>}``

answered ``200 {"certificate": <PEM>, "root": <PEM>}``; a ``CertificateRefused``
becomes ``403 {"error": str(error)}`` and a ``MalformedCertificateRequest``
``400 {"error": str(error)}``.

The supervisor passes the bootstrap token in the sidecar's environment
(``BOOTSTRAP_TOKEN_ENV``), not on its command line, where ``ps`` would show it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from meshkit.ca.errors import CaError
from meshkit.ca.issuer import DEFAULT_LEAF_LIFETIME, Issuer

BOOTSTRAP_TOKEN_ENV = "MESHKIT_CA_TOKEN"


class MalformedCertificateRequest(CaError, ValueError):
    """A certificate request body is not one of the two accepted shapes."""


def bootstrap_request_body(csr_pem: bytes, token: str) -> dict[str, str]:
    return {"csr": csr_pem.decode("ascii"), "token": token}


def renewal_request_body(csr_pem: bytes, cert_pem: bytes, proof: bytes) -> dict[str, str]:
    return {
        "csr": csr_pem.decode("ascii"),
        "certificate": cert_pem.decode("ascii"),
        "proof": base64.b64encode(proof).decode("ascii"),
    }


def _text_field(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedCertificateRequest(f"the field {name!r} must be a non-empty string")
    return value


def answer_certificate_request(
    issuer: Issuer, body: Mapping[str, object], *, lifetime: float = DEFAULT_LEAF_LIFETIME
) -> dict[str, str]:
    """Sign a first or a renewal request; ``{"certificate": PEM, "root": PEM}``.

    Raises ``CertificateRefused`` (answer 403) or ``MalformedCertificateRequest`` (400).
    """
    csr_pem = _text_field(body, "csr").encode("ascii", errors="replace")
    if "token" in body:
        cert_pem = issuer.sign_csr(csr_pem, _text_field(body, "token"), lifetime=lifetime)
    elif "certificate" in body:
        try:
            proof = base64.b64decode(_text_field(body, "proof"), validate=True)
        except binascii.Error as error:
            raise MalformedCertificateRequest(
                f"the field 'proof' is not base64: {error}"
            ) from error
        presented = _text_field(body, "certificate").encode("ascii", errors="replace")
        cert_pem = issuer.sign_renewal(csr_pem, presented, proof, lifetime=lifetime)
    else:
        raise MalformedCertificateRequest(
            "a certificate request needs 'token' (first certificate) or "
            "'certificate' and 'proof' (renewal) next to 'csr'"
        )
    return {"certificate": cert_pem.decode("ascii"), "root": issuer.root.pem.decode("ascii")}


def parse_certificate_answer(body: Mapping[str, object]) -> tuple[bytes, bytes]:
    """``(cert PEM, root PEM)`` from the control plane's answer."""
    return (
        _text_field(body, "certificate").encode("ascii"),
        _text_field(body, "root").encode("ascii"),
    )
