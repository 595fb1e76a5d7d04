"""SPIFFE identities: building, parsing and checking them (pure, no I/O).

A meshkit workload's identity is ``spiffe://meshkit.local/ns/<mesh>/sa/<service>``,
carried as the single URI SAN of its X.509-SVID.  The parsing rules follow the
SPIFFE ID specification: lowercase trust domain of ``[a-z0-9._-]``, path
segments of ``[A-Za-z0-9._-]`` that are neither empty, ``.`` nor ``..``, no
port, user info, query or fragment, at most 2048 bytes.

``check_svid`` enforces the X.509-SVID leaf rules of HARDENING.md:
exactly one URI SAN with a path, CA=false, digitalSignature, no
keyCertSign/cRLSign, and serverAuth+clientAuth when an EKU is present.

``check_validity`` is the time rule, the same for a TLS peer and for the
issuer asked to renew: a certificate is good from its notBefore until
``EXPIRY_GRACE`` seconds after its notAfter.  The grace exists so that a
stopped or slow control plane never stops the data plane: a sidecar that
cannot renew keeps serving with its just-expired certificate, peers still
accept it (chain, signature and key proof are verified as always), and the
issuer renews it as soon as it answers again.  Past the grace it is refused
everywhere; the instance must bootstrap again.
"""

from __future__ import annotations

import datetime
import string
from collections.abc import Collection

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshkit.ca.errors import InvalidSpiffeId, InvalidSvid

TRUST_DOMAIN = "meshkit.local"
SCHEME_PREFIX = "spiffe://"
MAX_SPIFFE_ID_BYTES = 2048
# How long past its notAfter a mesh certificate is still accepted (see above).
EXPIRY_GRACE = 300.0

_TRUST_DOMAIN_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-_")
_PATH_SEGMENT_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")


@attrs.frozen(kw_only=True)
class SpiffeId:
    """A parsed SPIFFE ID: ``spiffe://<trust_domain><path>``."""

    trust_domain: str
    path: str

    def __str__(self) -> str:
        return f"{SCHEME_PREFIX}{self.trust_domain}{self.path}"


@attrs.frozen(kw_only=True)
class WorkloadIdentity:
    """One of meshkit's identities: a service of a mesh."""

    mesh: str
    service: str


def _check_segment(segment: str, *, what: str, whole: str) -> None:
    if segment in ("", ".", ".."):
        raise InvalidSpiffeId(
            f"{whole!r}: {what} {segment!r} is not allowed in a SPIFFE ID "
            "(segments may not be empty, '.' or '..')"
        )
    bad = sorted(set(segment) - _PATH_SEGMENT_CHARS)
    if bad:
        raise InvalidSpiffeId(
            f"{whole!r}: {what} {segment!r} has characters a SPIFFE ID does not allow: "
            f"{''.join(bad)!r} (use letters, digits, '.', '-' and '_')"
        )


def spiffe_id(mesh: str, service: str) -> str:
    """The SPIFFE ID of ``service`` in ``mesh``; raises ``InvalidSpiffeId`` for bad names."""
    whole = f"{SCHEME_PREFIX}{TRUST_DOMAIN}/ns/{mesh}/sa/{service}"
    _check_segment(mesh, what="mesh name", whole=whole)
    _check_segment(service, what="service name", whole=whole)
    if len(whole.encode()) > MAX_SPIFFE_ID_BYTES:
        raise InvalidSpiffeId(f"SPIFFE ID is longer than {MAX_SPIFFE_ID_BYTES} bytes: {whole!r}")
    return whole


def parse_spiffe_id(value: str) -> SpiffeId:
    """Parse any SPIFFE ID, validating it; raises ``InvalidSpiffeId`` with the reason."""
    if len(value.encode("utf-8", errors="replace")) > MAX_SPIFFE_ID_BYTES:
        raise InvalidSpiffeId(f"SPIFFE ID is longer than {MAX_SPIFFE_ID_BYTES} bytes")
    if not value.startswith(SCHEME_PREFIX):
        raise InvalidSpiffeId(f"{value!r} is not a SPIFFE ID: it must start with 'spiffe://'")
    rest = value[len(SCHEME_PREFIX) :]
    if "?" in rest or "#" in rest:
        raise InvalidSpiffeId(f"{value!r}: a SPIFFE ID has no query or fragment")
    trust_domain, slash, path = rest.partition("/")
    if not trust_domain:
        raise InvalidSpiffeId(f"{value!r}: the trust domain is empty")
    if "@" in trust_domain or ":" in trust_domain:
        raise InvalidSpiffeId(f"{value!r}: a SPIFFE ID has no user info or port")
    bad = sorted(set(trust_domain) - _TRUST_DOMAIN_CHARS)
    if bad:
        raise InvalidSpiffeId(
            f"{value!r}: trust domain {trust_domain!r} has characters a SPIFFE ID does not "
            f"allow: {''.join(bad)!r} (lowercase letters, digits, '.', '-' and '_')"
        )
    if slash:
        for segment in path.split("/"):
            _check_segment(segment, what="path segment", whole=value)
    return SpiffeId(trust_domain=trust_domain, path=slash + path)


def parse_workload_identity(value: str) -> WorkloadIdentity:
    """Parse a meshkit identity ``spiffe://meshkit.local/ns/<mesh>/sa/<service>``."""
    parsed = parse_spiffe_id(value)
    if parsed.trust_domain != TRUST_DOMAIN:
        raise InvalidSpiffeId(
            f"{value!r} belongs to trust domain {parsed.trust_domain!r}, "
            f"not meshkit's {TRUST_DOMAIN!r}"
        )
    parts = parsed.path.split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
        raise InvalidSpiffeId(
            f"{value!r} is not a meshkit workload identity: expected the path "
            "'/ns/<mesh>/sa/<service>'"
        )
    return WorkloadIdentity(mesh=parts[2], service=parts[4])


def _uri_sans(extensions: x509.Extensions) -> list[str]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def _single_identity(uris: list[str], *, what: str) -> str:
    if len(uris) != 1:
        found = ", ".join(uris) if uris else "none"
        raise InvalidSvid(f"{what} must carry exactly one URI SAN (a SPIFFE ID); found {found}")
    identity = uris[0]
    parse_spiffe_id(identity)
    return identity


def identity_of(cert: x509.Certificate) -> str:
    """The SPIFFE ID in the certificate's single URI SAN; ``InvalidSvid`` otherwise."""
    return _single_identity(_uri_sans(cert.extensions), what="a certificate")


def identity_of_csr(csr: x509.CertificateSigningRequest) -> str:
    """The SPIFFE ID a CSR asks for (its single URI SAN); ``InvalidSvid`` otherwise."""
    return _single_identity(_uri_sans(csr.extensions), what="a certificate signing request")


def check_svid(cert: x509.Certificate) -> str:
    """Check the X.509-SVID leaf rules and return the certificate's SPIFFE ID."""
    identity = identity_of(cert)
    if parse_spiffe_id(identity).path == "":
        raise InvalidSvid(f"{identity!r}: an SVID's SPIFFE ID must have a path")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as missing:
        raise InvalidSvid(
            f"{identity}: a leaf SVID must say CA=false (no basicConstraints)"
        ) from missing
    if constraints.ca:
        raise InvalidSvid(f"{identity}: a leaf SVID must not be a CA (basicConstraints CA=true)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as missing:
        raise InvalidSvid(f"{identity}: a leaf SVID needs keyUsage digitalSignature") from missing
    if not usage.digital_signature:
        raise InvalidSvid(f"{identity}: a leaf SVID needs keyUsage digitalSignature")
    if usage.key_cert_sign or usage.crl_sign:
        raise InvalidSvid(f"{identity}: a leaf SVID may not have keyCertSign or cRLSign")
    try:
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return identity
    missing_purposes = [
        name
        for oid, name in (
            (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
            (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
        )
        if oid not in extended
    ]
    if missing_purposes:
        raise InvalidSvid(
            f"{identity}: a leaf SVID's extendedKeyUsage must include "
            f"{' and '.join(missing_purposes)}"
        )
    return identity


def _utc_text(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def check_validity(cert: x509.Certificate, *, now: float, grace: float = EXPIRY_GRACE) -> None:
    """``InvalidSvid`` unless ``now`` (epoch seconds) is between the certificate's
    notBefore and ``grace`` seconds after its notAfter."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < not_before.timestamp():
        raise InvalidSvid(f"the certificate is not valid before {_utc_text(not_before)}")
    if now >= not_after.timestamp() + grace:
        raise InvalidSvid(
            f"the certificate expired at {_utc_text(not_after)}, more than the "
            f"{grace:g}s of grace ago"
        )


def mesh_peer_problem(identity: str, *, mesh: str, services: Collection[str]) -> str | None:
    """Why a verified peer ``identity`` is not a member of ``mesh``, or None.

    A member is of meshkit's trust domain and of the mesh's namespace, and
    names one of ``services`` (the mesh's services and its gateway).
    """
    try:
        workload = parse_workload_identity(identity)
    except InvalidSpiffeId as error:
        return str(error)
    if workload.mesh != mesh:
        return f"{identity!r} belongs to mesh {workload.mesh!r}, not {mesh!r}"
    if workload.service not in services:
        return f"{identity!r} names no service of mesh {mesh!r}"
    return None
