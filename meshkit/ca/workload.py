"""What a workload (a sidecar) does with its own key: generate it, ask for certificates.

The private key is made in the sidecar's memory and never written to disk.
No event loop here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshkit.ca.spiffe import parse_spiffe_id

PrivateKey = ec.EllipticCurvePrivateKey


def generate_key() -> PrivateKey:
    """A fresh EC P-256 private key, in memory only."""
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: PrivateKey, spiffe_id: str) -> bytes:
    """A PEM CSR asking for ``spiffe_id`` as the single URI SAN, signed by ``key``."""
    parse_spiffe_id(spiffe_id)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshkit")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def make_serving_csr(key: PrivateKey, hosts: Sequence[str]) -> bytes:
    """A PEM CSR for an HTTPS serving certificate naming ``hosts`` (DNS names or IPs)."""
    if not hosts:
        raise ValueError("a serving certificate needs at least one host name or address")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def renewal_proof(current_key: PrivateKey, csr_pem: bytes) -> bytes:
    """Proof for ``Issuer.sign_renewal``: the current key's signature over the new CSR's DER."""
    csr_der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    return current_key.sign(csr_der, ec.ECDSA(hashes.SHA256()))


def private_key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM; keep it in memory or write it with 0600."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
