"""Identity: the mesh's root CA, SPIFFE workload certificates and TLS contexts.

This room imports nothing else of meshkit but the shared backoff (``meshkit.api.backoff``).  ``root`` keeps the CA on disk,
``spiffe`` parses and checks identities, ``issuer`` signs certificates,
``workload`` and ``renewal`` are what a sidecar uses, ``tls`` builds contexts.
"""

from meshkit.ca.errors import (
    CaError,
    CertificateRefused,
    CsrRefused,
    InsecureKeyFile,
    InvalidSpiffeId,
    InvalidSvid,
    PeerIdentityMismatch,
    TokenRefused,
)
from meshkit.ca.issuer import DEFAULT_LEAF_LIFETIME, Issuer, TokenStore
from meshkit.ca.renewal import RenewalSchedule
from meshkit.ca.root import RootCA
from meshkit.ca.spiffe import (
    EXPIRY_GRACE,
    TRUST_DOMAIN,
    SpiffeId,
    WorkloadIdentity,
    check_svid,
    identity_of,
    parse_spiffe_id,
    parse_workload_identity,
    spiffe_id,
)
from meshkit.ca.tls import (
    MeshTlsContexts,
    client_context,
    gateway_server_context,
    server_context,
    verify_peer_identity,
)
from meshkit.ca.workload import generate_key, make_csr, renewal_proof

__all__ = [
    "DEFAULT_LEAF_LIFETIME",
    "EXPIRY_GRACE",
    "TRUST_DOMAIN",
    "CaError",
    "CertificateRefused",
    "CsrRefused",
    "InsecureKeyFile",
    "InvalidSpiffeId",
    "InvalidSvid",
    "Issuer",
    "MeshTlsContexts",
    "PeerIdentityMismatch",
    "RenewalSchedule",
    "RootCA",
    "SpiffeId",
    "TokenRefused",
    "TokenStore",
    "WorkloadIdentity",
    "check_svid",
    "client_context",
    "gateway_server_context",
    "generate_key",
    "identity_of",
    "make_csr",
    "parse_spiffe_id",
    "parse_workload_identity",
    "renewal_proof",
    "server_context",
    "spiffe_id",
    "verify_peer_identity",
]
