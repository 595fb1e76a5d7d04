"""The certificate request bodies, through JSON, both first issuance and renewal."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from meshkit.ca import (
    CertificateRefused,
    Issuer,
    RootCA,
    TokenRefused,
    check_svid,
    generate_key,
    make_csr,
    renewal_proof,
    spiffe_id,
)
from meshkit.ca.exchange import (
    MalformedCertificateRequest,
    answer_certificate_request,
    bootstrap_request_body,
    parse_certificate_answer,
    renewal_request_body,
)

CATALOG = spiffe_id("shop", "catalog")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(root=RootCA.load_or_create(tmp_path_factory.mktemp("ca"), mesh="shop"))


def _over_the_wire(body: dict[str, str]) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(json.dumps(body))
    return decoded


def test_bootstrap_then_renewal(issuer: Issuer) -> None:
    key = generate_key()
    token = issuer.tokens.issue(CATALOG, ttl=60)
    first = answer_certificate_request(
        issuer, _over_the_wire(bootstrap_request_body(make_csr(key, CATALOG), token)), lifetime=60
    )
    cert_pem, root_pem = parse_certificate_answer(_over_the_wire(first))
    assert root_pem == issuer.root.pem
    assert check_svid(x509.load_pem_x509_certificate(cert_pem)) == CATALOG

    new_key = generate_key()
    csr = make_csr(new_key, CATALOG)
    body = renewal_request_body(csr, cert_pem, renewal_proof(key, csr))
    renewed_pem, _ = parse_certificate_answer(
        answer_certificate_request(issuer, _over_the_wire(body))
    )
    renewed = x509.load_pem_x509_certificate(renewed_pem)
    assert renewed.public_key() == new_key.public_key()


def test_reused_token_is_a_refusal(issuer: Issuer) -> None:
    token = issuer.tokens.issue(CATALOG, ttl=60)
    body = bootstrap_request_body(make_csr(generate_key(), CATALOG), token)
    answer_certificate_request(issuer, _over_the_wire(body))
    with pytest.raises(TokenRefused):
        answer_certificate_request(issuer, _over_the_wire(body))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "'csr'"),
        ({"csr": "x"}, "needs 'token'"),
        ({"csr": "x", "token": 5}, "'token'"),
        ({"csr": "x", "certificate": "y", "proof": "%%%"}, "not base64"),
        ({"csr": "x", "certificate": "y"}, "'proof'"),
    ],
)
def test_malformed_bodies(issuer: Issuer, body: dict[str, object], reason: str) -> None:
    with pytest.raises(MalformedCertificateRequest, match=reason):
        answer_certificate_request(issuer, body)


def test_renewal_with_garbage_is_refused_not_a_crash(issuer: Issuer) -> None:
    csr = make_csr(generate_key(), CATALOG)
    body = {"csr": csr.decode(), "certificate": "not a cert", "proof": "AAAA"}
    with pytest.raises(CertificateRefused, match="not PEM"):
        answer_certificate_request(issuer, body)
