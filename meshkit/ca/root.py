"""The mesh's root certificate authority, kept on disk under ``.meshkit/ca/``.

``RootCA.load_or_create`` makes an EC P-256 root valid for 10 years on first use
and loads it afterwards.  ``root.pem`` (0644) may be shared freely, e.g. with
``curl --cacert``; ``root-key.pem`` (0600) never leaves the control plane, and a
key file that the group or others can read is refused rather than used.

Files are written atomically: a temporary file is created with mode 0600 in the
same directory, filled, flushed to disk and renamed into place.  The key is
written before the certificate, so ``root.pem`` existing means the pair is
complete; a key without a certificate is an interrupted first run and is
replaced.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshkit.ca.errors import CaError, InsecureKeyFile

ROOT_CERT_FILE = "root.pem"
ROOT_KEY_FILE = "root-key.pem"
ROOT_LIFETIME = datetime.timedelta(days=3650)
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(seconds=60)

Clock = Callable[[], float]


def write_file_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data``; nobody ever sees a partial or over-readable file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def refuse_readable_key_file(path: Path) -> None:
    """Raise ``InsecureKeyFile`` when group or others may read or write ``path``."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureKeyFile(
            f"refusing to use private key {path}: its mode is {mode:04o}, so other users "
            f"of this machine can read it. Fix it with: chmod 600 {path}"
        )


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


@attrs.frozen(kw_only=True)
class RootCA:
    """A loaded root: its certificate, its key, and where it lives."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    path: Path

    @classmethod
    def load_or_create(cls, directory: Path, *, mesh: str, clock: Clock = time.time) -> RootCA:
        """Load the root from ``directory``, creating it (and the directory, 0700) if absent.

        ``mesh`` only names a new root; an existing root is loaded whatever its mesh.
        """
        directory = Path(directory)
        cert_path = directory / ROOT_CERT_FILE
        key_path = directory / ROOT_KEY_FILE
        if cert_path.exists():
            return cls.load(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self_signed_root(key, mesh=mesh, now=clock())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_file_atomically(key_path, key_pem, mode=0o600)
        write_file_atomically(
            cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644
        )
        return cls(certificate=certificate, private_key=key, path=cert_path)

    @classmethod
    def load(cls, directory: Path) -> RootCA:
        """Load an existing root; refuses a key file readable by others."""
        cert_path = Path(directory) / ROOT_CERT_FILE
        key_path = Path(directory) / ROOT_KEY_FILE
        if not key_path.exists():
            raise CaError(
                f"{cert_path} exists but its key {key_path} is missing; restore the key, "
                f"or remove {directory} to create a new root (every client must then "
                "trust the new root.pem)"
            )
        refuse_readable_key_file(key_path)
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"{key_path} is not an EC private key")
        if key.public_key() != certificate.public_key():
            raise CaError(
                f"{key_path} is not the key of {cert_path}; they belong to different roots"
            )
        return cls(certificate=certificate, private_key=key, path=cert_path)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint_sha256(self) -> str:
        """``AB:CD:...``, as ``openssl x509 -fingerprint -sha256`` prints it."""
        digest = hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER))
        return ":".join(f"{byte:02X}" for byte in digest.digest())

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def subject_key_identifier(self) -> x509.SubjectKeyIdentifier:
        return self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def self_signed_root(
    key: ec.EllipticCurvePrivateKey, *, mesh: str, now: float
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshkit"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"meshkit root CA ({mesh})"[:64]),
        ]
    )
    not_before = _utc(now) - CLOCK_SKEW_ALLOWANCE
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + ROOT_LIFETIME)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
