"""The root CA on disk: creation, file modes, reloading, refusing a readable key."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from meshkit.ca import CaError, InsecureKeyFile, RootCA


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_root_with_private_files(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "ca"
    root = RootCA.load_or_create(directory, mesh="shop")
    assert _mode(directory) == 0o700
    assert _mode(directory / "root.pem") == 0o644
    assert _mode(directory / "root-key.pem") == 0o600
    assert root.path == directory / "root.pem"
    assert sorted(p.name for p in directory.iterdir()) == ["root-key.pem", "root.pem"]


def test_root_certificate_is_a_constrained_ca(tmp_path: Path) -> None:
    root = RootCA.load_or_create(tmp_path, mesh="shop")
    certificate = root.certificate
    assert root.subject == "CN=meshkit root CA (shop),O=meshkit"
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days == 3650


def test_reloading_gives_the_same_root(tmp_path: Path) -> None:
    first = RootCA.load_or_create(tmp_path, mesh="shop")
    again = RootCA.load_or_create(tmp_path, mesh="another-name")
    assert again.fingerprint_sha256 == first.fingerprint_sha256
    assert again.pem == first.pem


def test_fingerprint_matches_openssl(tmp_path: Path) -> None:
    root = RootCA.load_or_create(tmp_path, mesh="shop")
    printed = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(root.path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert printed.strip().split("=", 1)[1] == root.fingerprint_sha256


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_refuses_a_key_readable_by_others(tmp_path: Path, mode: int) -> None:
    RootCA.load_or_create(tmp_path, mesh="shop")
    key_path = tmp_path / "root-key.pem"
    os.chmod(key_path, mode)
    with pytest.raises(InsecureKeyFile) as refused:
        RootCA.load_or_create(tmp_path, mesh="shop")
    message = str(refused.value)
    assert str(key_path) in message
    assert f"{mode:04o}" in message
    assert f"chmod 600 {key_path}" in message


def test_missing_key_is_an_error_not_a_new_root(tmp_path: Path) -> None:
    RootCA.load_or_create(tmp_path, mesh="shop")
    (tmp_path / "root-key.pem").unlink()
    with pytest.raises(CaError, match="is missing"):
        RootCA.load_or_create(tmp_path, mesh="shop")


def test_key_without_certificate_is_replaced(tmp_path: Path) -> None:
    first = RootCA.load_or_create(tmp_path, mesh="shop")
    (tmp_path / "root.pem").unlink()
    second = RootCA.load_or_create(tmp_path, mesh="shop")
    assert second.fingerprint_sha256 != first.fingerprint_sha256
    assert RootCA.load(tmp_path).fingerprint_sha256 == second.fingerprint_sha256


def test_key_of_another_root_is_refused(tmp_path: Path) -> None:
    RootCA.load_or_create(tmp_path / "a", mesh="a")
    RootCA.load_or_create(tmp_path / "b", mesh="b")
    os.replace(tmp_path / "b" / "root-key.pem", tmp_path / "a" / "root-key.pem")
    with pytest.raises(CaError, match="different roots"):
        RootCA.load(tmp_path / "a")
