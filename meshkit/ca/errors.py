"""The errors of the identity room, each one written for a person to read.

Every error derives from ``CaError`` so that a caller (the control API, a
sidecar) can turn any refusal into a readable answer with one ``except``.
"""

from __future__ import annotations


class CaError(Exception):
    """Base class: something about identities or certificates was refused."""


class InsecureKeyFile(CaError):
    """A private key file is readable by the group or by others."""


class InvalidSpiffeId(CaError, ValueError):
    """A string is not a SPIFFE ID, or not one of meshkit's workload identities."""


class InvalidSvid(CaError):
    """A certificate breaks the X.509-SVID leaf rules (HARDENING.md)."""


class CertificateRefused(CaError):
    """The issuer refused to sign: the caller should answer 403 with this message."""


class TokenRefused(CertificateRefused):
    """A bootstrap token is unknown, already used or expired."""


class CsrRefused(CertificateRefused):
    """A certificate signing request is malformed or asks for the wrong identity."""


class PeerIdentityMismatch(CaError):
    """A TLS peer presented no certificate, or a certificate of another identity."""
