"""A throwaway certificate authority and two P-256 leaves for the nginx mTLS pair.

The leaves look like meshkit's (a SPIFFE URI SAN, CA=false, serverAuth and
clientAuth) plus a DNS name nginx can verify with ``proxy_ssl_name``.  Keys are
written with mode 0600; everything lives in the benchmark's temporary directory.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "meshkit.local"
INBOUND_DNS_NAME = "inbound.bench.meshkit.local"
OUTBOUND_DNS_NAME = "outbound.bench.meshkit.local"


@attrs.frozen(kw_only=True)
class KeyPair:
    cert: Path
    key: Path


@attrs.frozen(kw_only=True)
class BenchCerts:
    """Paths of the PEM files: the root, the inbound (server) and outbound (client) leaves."""

    ca_cert: Path
    inbound: KeyPair
    outbound: KeyPair


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _leaf(
    *,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    service: str,
    dns_name: str,
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    spiffe_id = f"spiffe://{TRUST_DOMAIN}/ns/bench/sa/{service}"
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(service))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe_id), x509.DNSName(dns_name)]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_bench_certs(directory: Path) -> BenchCerts:
    """Write ``ca.pem``, ``inbound.{pem,key}`` and ``outbound.{pem,key}`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("meshkit bench root"))
        .issuer_name(_name("meshkit bench root"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    certs = BenchCerts(
        ca_cert=directory / "ca.pem",
        inbound=KeyPair(cert=directory / "inbound.pem", key=directory / "inbound.key"),
        outbound=KeyPair(cert=directory / "outbound.pem", key=directory / "outbound.key"),
    )
    _write_cert(certs.ca_cert, ca_cert)
    for pair, service, dns_name in (
        (certs.inbound, "backend", INBOUND_DNS_NAME),
        (certs.outbound, "loadgen", OUTBOUND_DNS_NAME),
    ):
        key, cert = _leaf(
            ca_key=ca_key, ca_cert=ca_cert, service=service, dns_name=dns_name, now=now
        )
        _write_key(pair.key, key)
        _write_cert(pair.cert, cert)
    return certs
