"""TLS contexts for mesh traffic (mTLS between sidecars) and for the gateway's HTTPS port.

Between sidecars: TLS 1.3 only, both sides present certificates and verify the
chain to the mesh root.  Clients offer ALPN ``h2`` then ``http/1.1``; a server
selects among the protocols its caller says it speaks (``alpn_protocols``), so
a sidecar that speaks only HTTP/1.1 passes ``SIDECAR_SERVER_ALPN``.  Servers
send no TLS 1.3 session tickets: meshkit never resumes sessions, and an
unread ticket would make an idle pooled connection look readable.  Host names are not
checked: a peer is who its SPIFFE ID says, so after the handshake the caller
runs ``verify_peer_identity`` (before sending or reading any HTTP byte).

Time: OpenSSL verifies the chain, the signatures and the key proof, but not the
validity period (``X509_V_FLAG_NO_CHECK_TIME``): ``verify_peer_identity``
checks it with ``check_validity``, which accepts a peer certificate expired
by at most ``EXPIRY_GRACE`` (a sidecar whose control plane is stopped keeps
serving while it cannot renew) and nothing else.

The ``ssl`` module loads keys from files only.  ``_load_cert_chain`` writes the
key encrypted with a random one-time password, mode 0600, into a fresh 0700
directory (in ``/dev/shm`` when available, so it never reaches a disk), and
removes it as soon as ``load_cert_chain`` returns: the key is never readable
by another user, nor by anyone at all once the context holds it.

Swapping a renewed certificate: build new contexts (``MeshTlsContexts.build``)
and hand *them* to listeners and pools for new connections.  A connection
keeps the context it was made with until it closes, so renewal drops nothing.
"""

from __future__ import annotations

import datetime
import os
import secrets
import ssl
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshkit.ca.errors import CaError, PeerIdentityMismatch
from meshkit.ca.spiffe import check_svid, check_validity

ALPN_PROTOCOLS = ["h2", "http/1.1"]
# What a sidecar's servers select: h2 when offered; the listener dispatches on
# ``selected_alpn_protocol()``.
SIDECAR_SERVER_ALPN = ["h2", "http/1.1"]
HTTP1_ONLY_ALPN = ["http/1.1"]
_SHARED_MEMORY = Path("/dev/shm")
# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (the ssl module has no name for it).
_NO_CHECK_TIME = 0x200000

PrivateKeyOrPem = ec.EllipticCurvePrivateKey | bytes


class PeerCertificateSource(Protocol):
    """An ``ssl.SSLObject``, ``ssl.SSLSocket``, ``trio.SSLStream`` or ``TlsStream``, handshaken."""

    def getpeercert(self, binary_form: bool) -> Any: ...


def _private_temporary_directory() -> str:
    base = _SHARED_MEMORY if os.access(_SHARED_MEMORY, os.W_OK) else None
    return tempfile.mkdtemp(prefix="meshkit-key-", dir=base)  # mkdtemp makes it 0700


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key: PrivateKeyOrPem) -> None:
    """Load a certificate and key into ``context`` without leaving the key readable anywhere."""
    if isinstance(key, bytes):
        loaded = serialization.load_pem_private_key(key, password=None)
    else:
        loaded = key
    password = secrets.token_bytes(32)
    encrypted = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    directory = Path(_private_temporary_directory())
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    try:
        _write_private(cert_path, cert_pem)
        _write_private(key_path, encrypted)
        context.load_cert_chain(cert_path, key_path, password=password)
    finally:
        key_path.unlink(missing_ok=True)
        cert_path.unlink(missing_ok=True)
        directory.rmdir()


def _present(
    context: ssl.SSLContext,
    cert_pem: bytes,
    key: PrivateKeyOrPem,
    alpn_protocols: Sequence[str],
    *,
    root_pem: bytes | None,
) -> ssl.SSLContext:
    """``context`` presenting ``cert_pem``, offering ``alpn_protocols``, trusting ``root_pem``."""
    if root_pem is not None:
        _trust_mesh_root(context, root_pem)
    _load_cert_chain(context, cert_pem, key)
    context.set_alpn_protocols(list(alpn_protocols))
    return context


def _trust_mesh_root(context: ssl.SSLContext, root_pem: bytes) -> None:
    context.load_verify_locations(cadata=root_pem.decode("ascii"))
    context.verify_flags |= ssl.VERIFY_X509_STRICT | _NO_CHECK_TIME


def server_context(
    cert_pem: bytes,
    key: PrivateKeyOrPem,
    root_pem: bytes,
    *,
    require_client_cert: bool = True,
    alpn_protocols: Sequence[str] = ALPN_PROTOCOLS,
) -> ssl.SSLContext:
    """A sidecar's inbound context: TLS 1.3, client certificate verified against the root.

    ``require_client_cert=False`` still verifies a certificate the client sends,
    but accepts clients without one (the caller then decides).  The server
    selects the first of ``alpn_protocols`` that the client offers.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    context.num_tickets = 0
    return _present(context, cert_pem, key, alpn_protocols, root_pem=root_pem)


def client_context(
    cert_pem: bytes,
    key: PrivateKeyOrPem,
    root_pem: bytes,
    *,
    alpn_protocols: Sequence[str] = ALPN_PROTOCOLS,
) -> ssl.SSLContext:
    """A sidecar's outbound context: TLS 1.3, presents its certificate, verifies the server's.

    No host name check: call ``verify_peer_identity`` after the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return _present(context, cert_pem, key, alpn_protocols, root_pem=root_pem)


def gateway_server_context(
    cert_pem: bytes,
    key_pem: PrivateKeyOrPem,
    *,
    alpn_protocols: Sequence[str] = ALPN_PROTOCOLS,
) -> ssl.SSLContext:
    """The gateway's HTTPS context: TLS 1.2 or newer for browsers, no client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_NONE
    context.num_tickets = 0
    return _present(context, cert_pem, key_pem, alpn_protocols, root_pem=None)


def verify_peer_identity(
    ssl_object: PeerCertificateSource, expected: str | None, *, now: float | None = None
) -> str:
    """The peer's SPIFFE ID; ``PeerIdentityMismatch`` unless it is ``expected``.

    ``expected=None`` accepts any valid mesh identity (an inbound listener that
    authorizes later).  Call it right after the handshake, before any HTTP byte.
    The certificate must be valid at ``now`` (default: the wall clock), give or
    take the expiry grace (the module docstring).
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise PeerIdentityMismatch(
            f"the peer presented no certificate (expected {expected or 'a mesh identity'})"
        )
    try:
        certificate = x509.load_der_x509_certificate(der)
        identity = check_svid(certificate)
    except (CaError, ValueError) as error:
        raise PeerIdentityMismatch(
            f"the peer's certificate is not a mesh identity: {error}"
        ) from error
    try:
        check_validity(certificate, now=time.time() if now is None else now)
    except CaError as error:
        raise PeerIdentityMismatch(f"the certificate of {identity} is refused: {error}") from None
    if expected is not None and identity != expected:
        raise PeerIdentityMismatch(f"expected peer {expected} but it presented {identity}")
    return identity


@attrs.frozen(kw_only=True)
class MeshTlsContexts:
    """A workload's current certificate and the contexts built from it.

    Replace the whole object on renewal; connections keep the contexts they
    were opened with.
    """

    identity: str
    not_after: datetime.datetime
    server: ssl.SSLContext
    client: ssl.SSLContext
    # Offers only http/1.1 (pooled HTTP/1.1 connections); None: use ``client``.
    client_http1: ssl.SSLContext | None = None

    @classmethod
    def build(
        cls,
        cert_pem: bytes,
        key: PrivateKeyOrPem,
        root_pem: bytes,
        *,
        require_client_cert: bool = True,
        server_alpn: Sequence[str] = ALPN_PROTOCOLS,
    ) -> MeshTlsContexts:
        certificate = x509.load_pem_x509_certificate(cert_pem)
        return cls(
            identity=check_svid(certificate),
            not_after=certificate.not_valid_after_utc,
            server=server_context(
                cert_pem,
                key,
                root_pem,
                require_client_cert=require_client_cert,
                alpn_protocols=server_alpn,
            ),
            client=client_context(cert_pem, key, root_pem),
            client_http1=client_context(
                cert_pem, key, root_pem, alpn_protocols=HTTP1_ONLY_ALPN
            ),
        )
