"""Bootstrap tokens, CSR signing and renewal, with a fake clock and real certificates."""

from __future__ import annotations

import datetime
import ipaddress
import logging
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshkit.ca import (
    EXPIRY_GRACE,
    CertificateRefused,
    CsrRefused,
    Issuer,
    RootCA,
    TokenRefused,
    TokenStore,
    check_svid,
    generate_key,
    make_csr,
    renewal_proof,
    spiffe_id,
)
from meshkit.ca.workload import make_serving_csr, private_key_pem

NOW = 1_750_000_000.0
CATALOG = spiffe_id("shop", "catalog")
FRONTEND = spiffe_id("shop", "frontend")


@attrs.define
class FakeClock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> RootCA:
    return RootCA.load_or_create(tmp_path_factory.mktemp("ca"), mesh="shop")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(root: RootCA, clock: FakeClock) -> Issuer:
    return Issuer(root=root, clock=clock)


def test_token_is_redeemed_once(clock: FakeClock) -> None:
    tokens = TokenStore(clock=clock)
    token = tokens.issue(CATALOG, ttl=60)
    assert len(token) >= 43
    assert len(tokens) == 1
    assert tokens.redeem(token) == CATALOG
    assert len(tokens) == 0
    with pytest.raises(TokenRefused, match="already used"):
        tokens.redeem(token)


def test_tokens_are_distinct(clock: FakeClock) -> None:
    tokens = TokenStore(clock=clock)
    issued = {tokens.issue(CATALOG, ttl=60) for _ in range(50)}
    assert len(issued) == 50


def test_unknown_token_is_refused(clock: FakeClock) -> None:
    with pytest.raises(TokenRefused, match="unknown"):
        TokenStore(clock=clock).redeem("not-a-token")


def test_expired_token_is_refused(clock: FakeClock) -> None:
    tokens = TokenStore(clock=clock)
    token = tokens.issue(CATALOG, ttl=30)
    clock.now += 30
    with pytest.raises(TokenRefused, match="expired"):
        tokens.redeem(token)
    with pytest.raises(TokenRefused):
        tokens.redeem(token)


def test_token_just_before_expiry_works(clock: FakeClock) -> None:
    tokens = TokenStore(clock=clock)
    token = tokens.issue(CATALOG, ttl=30)
    clock.now += 29.9
    assert tokens.redeem(token) == CATALOG


def test_token_needs_a_spiffe_identity(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="SPIFFE"):
        TokenStore(clock=clock).issue("catalog", ttl=30)


def _issue(
    issuer: Issuer, identity: str, *, lifetime: float = 3600
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = generate_key()
    token = issuer.tokens.issue(identity, ttl=60)
    return key, issuer.sign_csr(make_csr(key, identity), token, lifetime=lifetime)


def test_issued_leaf_follows_the_svid_rules(issuer: Issuer, root: RootCA) -> None:
    key, cert_pem = _issue(issuer, CATALOG, lifetime=90)
    certificate = x509.load_pem_x509_certificate(cert_pem)
    assert check_svid(certificate) == CATALOG
    assert certificate.public_key() == key.public_key()
    certificate.verify_directly_issued_by(root.certificate)
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).critical
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).critical
    purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(purposes) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    authority = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert authority.key_identifier == root.subject_key_identifier.digest
    issued_at = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
    assert certificate.not_valid_before_utc == issued_at - datetime.timedelta(seconds=60)
    assert certificate.not_valid_after_utc == issued_at + datetime.timedelta(seconds=90)


def test_default_lifetime_is_a_day(issuer: Issuer) -> None:
    token = issuer.tokens.issue(CATALOG, ttl=60)
    certificate = x509.load_pem_x509_certificate(
        issuer.sign_csr(make_csr(generate_key(), CATALOG), token)
    )
    issued_at = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
    assert certificate.not_valid_after_utc - issued_at == datetime.timedelta(hours=24)


def test_csr_for_a_foreign_identity_is_refused_and_logged(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = issuer.tokens.issue(FRONTEND, ttl=60)
    with (
        caplog.at_level(logging.WARNING, logger="meshkit.ca"),
        pytest.raises(CsrRefused) as refused,
    ):
        issuer.sign_csr(make_csr(generate_key(), CATALOG), token)
    assert CATALOG in str(refused.value)
    assert FRONTEND in str(refused.value)
    assert any(CATALOG in r.getMessage() and FRONTEND in r.getMessage() for r in caplog.records)
    with pytest.raises(TokenRefused, match="already used"):
        issuer.sign_csr(make_csr(generate_key(), FRONTEND), token)


def test_csr_with_a_bad_signature_is_refused(issuer: Issuer) -> None:
    csr = x509.load_pem_x509_csr(make_csr(generate_key(), CATALOG))
    der = csr.public_bytes(serialization.Encoding.DER)
    # The signature's last byte is the last byte of the DER: flip one bit of it.
    tampered = x509.load_der_x509_csr(der[:-1] + bytes([der[-1] ^ 1]))
    token = issuer.tokens.issue(CATALOG, ttl=60)
    with pytest.raises(CsrRefused, match="signature"):
        issuer.sign_csr(tampered.public_bytes(serialization.Encoding.PEM), token)


def test_csr_without_an_identity_is_refused(issuer: Issuer) -> None:
    token = issuer.tokens.issue(CATALOG, ttl=60)
    with pytest.raises(CsrRefused, match="not a PEM"):
        issuer.sign_csr(b"hello", token)
    assert issuer.tokens.redeem(token) == CATALOG


def test_wrong_token_is_refused(issuer: Issuer) -> None:
    with pytest.raises(TokenRefused):
        issuer.sign_csr(make_csr(generate_key(), CATALOG), "guess")


def test_renewal_with_current_certificate(issuer: Issuer, clock: FakeClock) -> None:
    old_key, old_cert = _issue(issuer, CATALOG, lifetime=100)
    clock.now += 50
    new_key = generate_key()
    csr = make_csr(new_key, CATALOG)
    renewed = x509.load_pem_x509_certificate(
        issuer.sign_renewal(csr, old_cert, renewal_proof(old_key, csr), lifetime=100)
    )
    assert check_svid(renewed) == CATALOG
    assert renewed.public_key() == new_key.public_key()


def test_renewal_needs_proof_of_the_current_key(issuer: Issuer) -> None:
    _old_key, old_cert = _issue(issuer, CATALOG)
    csr = make_csr(generate_key(), CATALOG)
    stolen_certificate_only = renewal_proof(generate_key(), csr)
    with pytest.raises(CsrRefused, match="proof"):
        issuer.sign_renewal(csr, old_cert, stolen_certificate_only)


def test_renewal_for_another_identity_is_refused(issuer: Issuer) -> None:
    old_key, old_cert = _issue(issuer, FRONTEND)
    csr = make_csr(generate_key(), CATALOG)
    with pytest.raises(CsrRefused, match=f"asks for {CATALOG}.*{FRONTEND}"):
        issuer.sign_renewal(csr, old_cert, renewal_proof(old_key, csr))


def test_renewal_of_a_certificate_expired_within_the_grace_is_signed(
    issuer: Issuer, clock: FakeClock
) -> None:
    """A control plane that was stopped renews what it let expire meanwhile."""
    old_key, old_cert = _issue(issuer, CATALOG, lifetime=10)
    clock.now += 10 + EXPIRY_GRACE - 1
    csr = make_csr(generate_key(), CATALOG)
    renewed = x509.load_pem_x509_certificate(
        issuer.sign_renewal(csr, old_cert, renewal_proof(old_key, csr))
    )
    assert renewed.not_valid_after_utc.timestamp() > clock.now


def test_renewal_with_a_certificate_expired_beyond_the_grace_is_refused(
    issuer: Issuer, clock: FakeClock
) -> None:
    old_key, old_cert = _issue(issuer, CATALOG, lifetime=10)
    clock.now += 10 + EXPIRY_GRACE
    csr = make_csr(generate_key(), CATALOG)
    with pytest.raises(CsrRefused, match=r"not valid now: .* more than the 300s of grace ago"):
        issuer.sign_renewal(csr, old_cert, renewal_proof(old_key, csr))


def test_renewal_with_a_certificate_of_another_root_is_refused(
    issuer: Issuer, clock: FakeClock, tmp_path: Path
) -> None:
    stranger = Issuer(root=RootCA.load_or_create(tmp_path, mesh="shop"), clock=clock)
    old_key, old_cert = _issue(stranger, CATALOG)
    csr = make_csr(generate_key(), CATALOG)
    with pytest.raises(CertificateRefused, match="not issued by this mesh's root"):
        issuer.sign_renewal(csr, old_cert, renewal_proof(old_key, csr))


def gateway_serving_certificate(
    issuer: Issuer, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), *, lifetime: float = 3600
) -> tuple[bytes, bytes]:
    """``(cert PEM, key PEM)`` for the gateway's HTTPS port, asked for as the gateway does."""
    gateway = spiffe_id("shop", "gateway")
    svid_key, svid_pem = _issue(issuer, gateway)
    key = generate_key()
    csr = make_serving_csr(key, hosts)
    cert_pem = issuer.sign_gateway_csr(
        csr,
        svid_pem,
        renewal_proof(svid_key, csr),
        gateway_identity=gateway,
        hosts=hosts,
        lifetime=lifetime,
    )
    return cert_pem, private_key_pem(key)


def test_gateway_certificate_names_hosts(issuer: Issuer) -> None:
    cert_pem, key_pem = gateway_serving_certificate(issuer, ("localhost", "127.0.0.1"), lifetime=60)
    certificate = x509.load_pem_x509_certificate(cert_pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert b"PRIVATE KEY" in key_pem


def test_lifetime_must_be_positive(issuer: Issuer) -> None:
    token = issuer.tokens.issue(CATALOG, ttl=60)
    with pytest.raises(ValueError, match="positive"):
        issuer.sign_csr(make_csr(generate_key(), CATALOG), token, lifetime=0)
    assert issuer.tokens.redeem(token) == CATALOG
