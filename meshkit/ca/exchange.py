"""The JSON bodies of a certificate request, shared by the control API and the sidecar.

Proposed endpoint (the control API's owner routes it; this module holds no I/O):
``POST /v1/instances/<instance>/certificate`` with either

* first certificate: ``{"csr": <PEM>, "token": <bootstrap token>}``, or
* renewal: ``{"csr": <PEM>, "certificate": <current cert PEM>, "proof": <base64>}``,
* the gateway's HTTPS certificate: the renewal shape plus
  ``"purpose": "gateway-https"``, the CSR naming hosts instead of a SPIFFE ID

answered ``200 {"certificate": <PEM>, "root": <PEM>}``; a ``CertificateRefused``
becomes ``403 {"error": str(error)}`` and a ``MalformedCertificateRequest``
``400 {"error": str(error)}``.

The supervisor hands the bootstrap token to the sidecar through an inherited
pipe: it writes the token into a pipe, closes the write end, and passes the
read end to the child (``pass_fds``), naming its number in the environment
variable ``BOOTSTRAP_FD_ENV``.  The sidecar reads the token and closes the
descriptor.  The token is never on a command line (``ps``) nor in an
environment (``/proc/<pid>/environ``), and nobody can read it twice.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from meshkit.ca.errors import CaError, CertificateRefused
from meshkit.ca.issuer import DEFAULT_LEAF_LIFETIME, Issuer

BOOTSTRAP_FD_ENV = "MESHKIT_BOOTSTRAP_FD"
IDENTITY_ENV = "MESHKIT_IDENTITY"  # the SPIFFE ID the sidecar asks for (not a secret)
GATEWAY_HTTPS_PURPOSE = "gateway-https"


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


def gateway_request_body(csr_pem: bytes, cert_pem: bytes, proof: bytes) -> dict[str, str]:
    """Ask for the gateway's HTTPS certificate, authorised by its current SVID."""
    return {**renewal_request_body(csr_pem, cert_pem, proof), "purpose": GATEWAY_HTTPS_PURPOSE}


def _text_field(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedCertificateRequest(f"the field {name!r} must be a non-empty string")
    return value


def answer_certificate_request(
    issuer: Issuer,
    body: Mapping[str, object],
    *,
    lifetime: float = DEFAULT_LEAF_LIFETIME,
    gateway_identity: str | None = None,
) -> dict[str, str]:
    """Sign a first, a renewal or a gateway HTTPS request; ``{"certificate", "root"}`` PEMs.

    ``gateway_identity`` is the SPIFFE ID allowed to ask for the gateway's HTTPS
    certificate (None: nobody).  Raises ``CertificateRefused`` (answer 403) or
    ``MalformedCertificateRequest`` (400).
    """
    csr_pem = _text_field(body, "csr").encode("ascii", errors="replace")
    purpose = body.get("purpose")
    if purpose is not None and purpose != GATEWAY_HTTPS_PURPOSE:
        raise MalformedCertificateRequest(
            f"unknown purpose {purpose!r}; the only one is {GATEWAY_HTTPS_PURPOSE!r}"
        )
    if purpose == GATEWAY_HTTPS_PURPOSE:
        if gateway_identity is None:
            raise CertificateRefused("this mesh has no gateway to issue an HTTPS certificate for")
        cert_pem = issuer.sign_gateway_csr(
            csr_pem,
            _text_field(body, "certificate").encode("ascii", errors="replace"),
            _proof(body),
            gateway_identity=gateway_identity,
            lifetime=lifetime,
        )
    elif "token" in body:
        cert_pem = issuer.sign_csr(csr_pem, _text_field(body, "token"), lifetime=lifetime)
    elif "certificate" in body:
        presented = _text_field(body, "certificate").encode("ascii", errors="replace")
        cert_pem = issuer.sign_renewal(csr_pem, presented, _proof(body), lifetime=lifetime)
    else:
        raise MalformedCertificateRequest(
            "a certificate request needs 'token' (first certificate) or "
            "'certificate' and 'proof' (renewal) next to 'csr'"
        )
    return {"certificate": cert_pem.decode("ascii"), "root": issuer.root.pem.decode("ascii")}


def _proof(body: Mapping[str, object]) -> bytes:
    try:
        return base64.b64decode(_text_field(body, "proof"), validate=True)
    except binascii.Error as error:
        raise MalformedCertificateRequest(f"the field 'proof' is not base64: {error}") from error


def parse_certificate_answer(body: Mapping[str, object]) -> tuple[bytes, bytes]:
    """``(cert PEM, root PEM)`` from the control plane's answer."""
    return (
        _text_field(body, "certificate").encode("ascii"),
        _text_field(body, "root").encode("ascii"),
    )
