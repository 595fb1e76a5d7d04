"""Signing workload certificates: bootstrap tokens, CSR checks, leaf issuance.

How a sidecar gets its first certificate: the supervisor asks the issuer's
``TokenStore`` for a one-time token bound to the service's SPIFFE ID and hands
it to the sidecar at spawn; the sidecar makes its own key and sends a CSR with
the token; ``Issuer.sign_csr`` accepts the CSR only if it asks for exactly the
identity the token was issued for.

How it renews (the design choice): a one-time token cannot be used twice, and
chaining "renewal tokens" would break the day one answer is lost and would not
survive a control-plane restart.  Instead a renewing sidecar presents its
current certificate (unexpired, or expired within
``meshkit.ca.spiffe.EXPIRY_GRACE``: a control plane that was stopped renews
what it let expire) *and* proves it holds that certificate's key by
signing the new CSR with it (``meshkit.ca.workload.renewal_proof``).  A
certificate alone proves nothing, since every TLS handshake shows it to the
peer; the signature does.  ``Issuer.sign_renewal`` checks the chain to the
root, the validity period, the SVID rules, the proof, and that the CSR asks for
the same SPIFFE ID.  Retries are harmless, and any process with the root on
disk can answer.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshkit.ca.errors import CaError, CsrRefused, InvalidSvid, TokenRefused
from meshkit.ca.root import CLOCK_SKEW_ALLOWANCE, RootCA
from meshkit.ca.spiffe import (
    check_svid,
    check_validity,
    identity_of_csr,
    parse_spiffe_id,
    parse_workload_identity,
)

DEFAULT_LEAF_LIFETIME = 24 * 60 * 60.0
DEFAULT_GATEWAY_HOSTS = ("localhost", "127.0.0.1")
ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)

log = logging.getLogger("meshkit.ca")

Clock = Callable[[], float]


def _token_digest(token: str) -> bytes:
    # Tokens are kept as digests: a dump of the store reveals no usable token,
    # and lookups never compare secrets byte by byte.
    return hashlib.sha256(token.encode("utf-8", errors="replace")).digest()


@attrs.frozen(kw_only=True)
class _Grant:
    identity: str
    expires_at: float


@attrs.define(kw_only=True)
class TokenStore:
    """One-time bootstrap tokens, each bound to one identity (pure, injected clock)."""

    clock: Clock
    _unused: dict[bytes, _Grant] = attrs.field(factory=dict, init=False)
    _used: dict[bytes, _Grant] = attrs.field(factory=dict, init=False)

    def issue(self, identity: str, *, ttl: float) -> str:
        """A fresh token (32 random bytes, URL-safe) that ``redeem`` accepts once within ``ttl`` s."""
        parse_spiffe_id(identity)
        if ttl <= 0:
            raise ValueError(f"a token's ttl must be positive, not {ttl}")
        self._forget_expired()
        token = secrets.token_urlsafe(32)
        self._unused[_token_digest(token)] = _Grant(
            identity=identity, expires_at=self.clock() + ttl
        )
        return token

    def redeem(self, token: str) -> str:
        """The identity ``token`` was issued for; ``TokenRefused`` if unknown, reused or expired."""
        digest = _token_digest(token)
        now = self.clock()
        grant = self._unused.pop(digest, None)
        if grant is None:
            if digest in self._used:
                raise TokenRefused(
                    "this bootstrap token was already used; a token is good for one "
                    "certificate only (renew with the current certificate instead)"
                )
            raise TokenRefused("unknown bootstrap token")
        self._used[digest] = grant
        if now >= grant.expires_at:
            raise TokenRefused(
                f"the bootstrap token for {grant.identity} expired "
                f"{now - grant.expires_at:.1f} s ago; restart the instance to get a new one"
            )
        return grant.identity

    def __len__(self) -> int:
        """How many tokens may still be redeemed."""
        now = self.clock()
        return sum(1 for grant in self._unused.values() if grant.expires_at > now)

    def _forget_expired(self) -> None:
        now = self.clock()
        for table in (self._unused, self._used):
            for digest in [d for d, grant in table.items() if grant.expires_at <= now]:
                del table[digest]


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as error:
        raise CsrRefused(f"not a PEM certificate signing request: {error}") from error
    if not csr.is_signature_valid:
        raise CsrRefused("the CSR's signature does not match its public key")
    public_key = csr.public_key()
    if not (
        isinstance(public_key, ec.EllipticCurvePublicKey)
        and isinstance(public_key.curve, ACCEPTED_CURVES)
    ):
        raise CsrRefused("the CSR's key must be an EC key on P-256 or P-384")
    return csr


def _requested_identity(csr: x509.CertificateSigningRequest) -> str:
    try:
        return identity_of_csr(csr)
    except CaError as error:
        raise CsrRefused(str(error)) from error


def _host_of(name: x509.GeneralName) -> str:
    return str(name.value)


def _serving_names(
    csr: x509.CertificateSigningRequest, *, allowed: Sequence[str]
) -> list[x509.GeneralName]:
    """The CSR's DNS/IP SANs, each checked against ``allowed``; no other kind of name."""
    try:
        requested = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        requested = []
    if not requested:
        raise CsrRefused("a serving certificate request must name its hosts (DNS or IP SANs)")
    allowed_names = {host.lower() for host in allowed}
    for name in requested:
        if not isinstance(name, x509.DNSName | x509.IPAddress):
            raise CsrRefused(
                f"a serving certificate may only name hosts, not {type(name).__name__} "
                f"{name.value!r}"
            )
        if str(name.value).lower() not in allowed_names:
            raise CsrRefused(
                f"the gateway may not have a certificate for {name.value}; allowed: "
                f"{', '.join(allowed)}"
            )
    return requested


def _check_lifetime(lifetime: float) -> None:
    if lifetime <= 0:
        raise ValueError(f"a certificate lifetime must be positive, not {lifetime} s")


def _key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@attrs.frozen(kw_only=True)
class Issuer:
    """Signs leaf certificates with the mesh root."""

    root: RootCA
    clock: Clock = time.time
    tokens: TokenStore = attrs.field(
        default=attrs.Factory(lambda self: TokenStore(clock=self.clock), takes_self=True)
    )

    def sign_csr(
        self, csr_pem: bytes, token: str, *, lifetime: float = DEFAULT_LEAF_LIFETIME
    ) -> bytes:
        """A leaf certificate (PEM) for a first-time CSR carrying a bootstrap token."""
        _check_lifetime(lifetime)
        csr = _load_csr(csr_pem)
        requested = _requested_identity(csr)
        granted = self.tokens.redeem(token)
        if requested != granted:
            log.warning(
                "refused a CSR for %s presented with a token issued for %s", requested, granted
            )
            raise CsrRefused(f"the CSR asks for {requested} but its token was issued for {granted}")
        return self._issue_leaf(csr, requested, lifetime=lifetime)

    def sign_renewal(
        self,
        csr_pem: bytes,
        presented_cert_pem: bytes,
        proof: bytes,
        *,
        lifetime: float = DEFAULT_LEAF_LIFETIME,
    ) -> bytes:
        """A renewed leaf (PEM) for a CSR signed off by the holder of a current certificate.

        ``proof`` is the presented certificate's key's ECDSA-SHA256 signature over
        the CSR's DER bytes (``meshkit.ca.workload.renewal_proof``).
        """
        _check_lifetime(lifetime)
        csr = _load_csr(csr_pem)
        requested = _requested_identity(csr)
        current = self._verify_holder(presented_cert_pem, proof, csr)
        if requested != current:
            log.warning(
                "refused a renewal CSR for %s presented with a cert of %s", requested, current
            )
            raise CsrRefused(
                f"the CSR asks for {requested} but the presented certificate is {current}"
            )
        return self._issue_leaf(csr, requested, lifetime=lifetime)

    def sign_gateway_csr(
        self,
        csr_pem: bytes,
        presented_cert_pem: bytes,
        proof: bytes,
        *,
        gateway_identity: str,
        hosts: Sequence[str] = DEFAULT_GATEWAY_HOSTS,
        lifetime: float = DEFAULT_LEAF_LIFETIME,
    ) -> bytes:
        """An HTTPS serving certificate (PEM) for the gateway's own key.

        The CSR names host names and addresses (DNS/IP SANs, each one of
        ``hosts``, no URI); it is authorised by the gateway's current SVID
        (``presented_cert_pem``, which must be ``gateway_identity``) and
        ``proof``, that SVID's key's signature over the CSR, as for a renewal.
        """
        _check_lifetime(lifetime)
        csr = _load_csr(csr_pem)
        holder = self._verify_holder(presented_cert_pem, proof, csr)
        if holder != gateway_identity:
            log.warning("refused a gateway certificate request from %s", holder)
            raise CsrRefused(
                f"only the gateway ({gateway_identity}) may ask for the gateway's HTTPS "
                f"certificate; the presented certificate is {holder}"
            )
        names = _serving_names(csr, allowed=hosts)
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)  # checked by _load_csr
        certificate = (
            self._leaf_builder(public_key, subject_name=_host_of(names[0]), lifetime=lifetime)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.root.private_key, hashes.SHA256())
        )
        log.info(
            "issued the gateway's HTTPS certificate for %s valid until %s",
            ", ".join(_host_of(name) for name in names),
            certificate.not_valid_after_utc,
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def _verify_holder(
        self, presented_cert_pem: bytes, proof: bytes, csr: x509.CertificateSigningRequest
    ) -> str:
        """The identity of a current SVID whose key signed ``csr`` (``proof``); else refuse."""
        presented = self._verify_presented(presented_cert_pem)
        try:
            current = check_svid(presented)
        except CaError as error:
            raise CsrRefused(f"the presented certificate is not a valid SVID: {error}") from error
        public_key = presented.public_key()
        try:
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise InvalidSignature
            csr_der = csr.public_bytes(serialization.Encoding.DER)
            public_key.verify(proof, csr_der, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as error:
            raise CsrRefused(
                f"request from {current} refused: the proof is not signed by the key of the "
                "presented certificate"
            ) from error
        return current

    def _verify_presented(self, presented_cert_pem: bytes) -> x509.Certificate:
        try:
            presented = x509.load_pem_x509_certificate(presented_cert_pem)
        except ValueError as error:
            raise CsrRefused(f"the presented certificate is not PEM: {error}") from error
        try:
            presented.verify_directly_issued_by(self.root.certificate)
        except (ValueError, TypeError, InvalidSignature) as error:
            raise CsrRefused(
                "the presented certificate was not issued by this mesh's root"
            ) from error
        try:
            check_validity(presented, now=self.clock())
        except InvalidSvid as error:
            raise CsrRefused(
                f"the presented certificate is not valid now: {error}; "
                "restart the instance to bootstrap again"
            ) from error
        return presented

    def _leaf_builder(
        self, public_key: ec.EllipticCurvePublicKey, *, subject_name: str, lifetime: float
    ) -> x509.CertificateBuilder:
        _check_lifetime(lifetime)
        now = _utc(self.clock())
        not_after = min(
            now + datetime.timedelta(seconds=lifetime), self.root.certificate.not_valid_after_utc
        )
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshkit"),
                x509.NameAttribute(NameOID.COMMON_NAME, subject_name[:64]),
            ]
        )
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.root.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self.root.subject_key_identifier
                ),
                critical=False,
            )
        )

    def _issue_leaf(
        self, csr: x509.CertificateSigningRequest, identity: str, *, lifetime: float
    ) -> bytes:
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)  # checked by _load_csr
        try:
            subject_name = parse_workload_identity(identity).service
        except CaError:
            subject_name = "meshkit workload"
        certificate = (
            self._leaf_builder(public_key, subject_name=subject_name, lifetime=lifetime)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.root.private_key, hashes.SHA256())
        )
        log.info(
            "issued a certificate for %s valid until %s", identity, certificate.not_valid_after_utc
        )
        return certificate.public_bytes(serialization.Encoding.PEM)
