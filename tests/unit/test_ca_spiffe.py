"""SPIFFE IDs: building, parsing, and the X.509-SVID leaf rules."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from meshkit.ca import (
    InvalidSpiffeId,
    InvalidSvid,
    SpiffeId,
    WorkloadIdentity,
    check_svid,
    identity_of,
    parse_spiffe_id,
    parse_workload_identity,
    spiffe_id,
)

SEGMENT = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_",
    min_size=1,
    max_size=40,
).filter(lambda s: s not in (".", ".."))


def test_spiffe_id_of_a_service() -> None:
    assert spiffe_id("shop", "catalog") == "spiffe://meshkit.local/ns/shop/sa/catalog"


@given(mesh=SEGMENT, service=SEGMENT)
def test_spiffe_id_round_trips(mesh: str, service: str) -> None:
    uri = spiffe_id(mesh, service)
    identity = parse_workload_identity(uri)
    assert identity == WorkloadIdentity(mesh=mesh, service=service)
    assert spiffe_id(identity.mesh, identity.service) == uri
    assert str(parse_spiffe_id(uri)) == uri


@pytest.mark.parametrize(
    ("mesh", "service"),
    [("shop", ""), ("", "catalog"), ("shop", ".."), ("my shop", "catalog"), ("shop", "a/b")],
)
def test_spiffe_id_refuses_bad_names(mesh: str, service: str) -> None:
    with pytest.raises(InvalidSpiffeId, match="SPIFFE ID"):
        spiffe_id(mesh, service)


def test_parse_general_spiffe_id() -> None:
    assert parse_spiffe_id("spiffe://example.org") == SpiffeId(trust_domain="example.org", path="")
    assert parse_spiffe_id("spiffe://example.org/a/b") == SpiffeId(
        trust_domain="example.org", path="/a/b"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://meshkit.local/ns/a/sa/b", "must start with 'spiffe://'"),
        ("SPIFFE://meshkit.local/ns/a/sa/b", "must start with 'spiffe://'"),
        ("spiffe:///ns/a/sa/b", "trust domain is empty"),
        ("spiffe://Meshkit.local/ns/a", "trust domain"),
        ("spiffe://meshkit.local:443/ns/a", "user info or port"),
        ("spiffe://user@meshkit.local/ns/a", "user info or port"),
        ("spiffe://meshkit.local/ns/a?x=1", "query or fragment"),
        ("spiffe://meshkit.local/ns/a#f", "query or fragment"),
        ("spiffe://meshkit.local/ns//a", "may not be empty"),
        ("spiffe://meshkit.local/ns/a/", "may not be empty"),
        ("spiffe://meshkit.local/ns/./a", "may not be empty"),
        ("spiffe://meshkit.local/ns/%41", "characters"),
        ("spiffe://meshkit.local/" + "a" * 2100, "longer than 2048"),
    ],
)
def test_parse_refuses_malformed_ids(value: str, reason: str) -> None:
    with pytest.raises(InvalidSpiffeId, match=reason):
        parse_spiffe_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "spiffe://example.org/ns/shop/sa/catalog",
        "spiffe://meshkit.local/ns/shop",
        "spiffe://meshkit.local/ns/shop/service/catalog",
        "spiffe://meshkit.local/ns/shop/sa/catalog/extra",
    ],
)
def test_workload_identity_needs_meshkit_shape(value: str) -> None:
    with pytest.raises(InvalidSpiffeId):
        parse_workload_identity(value)


def _certificate(
    *,
    uris: list[str],
    ca: bool = False,
    digital_signature: bool = True,
    key_cert_sign: bool = False,
    purposes: list[x509.ObjectIdentifier] | None = None,
    with_key_usage: bool = True,
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    if with_key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if purposes is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    return builder.sign(key, hashes.SHA256())


CATALOG = "spiffe://meshkit.local/ns/shop/sa/catalog"
BOTH = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_check_svid_accepts_a_proper_leaf() -> None:
    assert check_svid(_certificate(uris=[CATALOG], purposes=BOTH)) == CATALOG
    assert check_svid(_certificate(uris=[CATALOG])) == CATALOG
    assert identity_of(_certificate(uris=[CATALOG])) == CATALOG


@pytest.mark.parametrize(
    ("certificate_options", "reason"),
    [
        ({"uris": []}, "exactly one URI SAN"),
        ({"uris": [CATALOG, "spiffe://meshkit.local/ns/shop/sa/other"]}, "exactly one URI SAN"),
        ({"uris": ["spiffe://meshkit.local"]}, "must have a path"),
        ({"uris": [CATALOG], "ca": True}, "must not be a CA"),
        ({"uris": [CATALOG], "digital_signature": False}, "digitalSignature"),
        ({"uris": [CATALOG], "with_key_usage": False}, "digitalSignature"),
        ({"uris": [CATALOG], "key_cert_sign": True}, "keyCertSign"),
        ({"uris": [CATALOG], "purposes": [ExtendedKeyUsageOID.SERVER_AUTH]}, "clientAuth"),
    ],
)
def test_check_svid_refuses_broken_leaves(
    certificate_options: dict[str, object], reason: str
) -> None:
    certificate = _certificate(**certificate_options)  # type: ignore[arg-type]
    with pytest.raises(InvalidSvid, match=reason):
        check_svid(certificate)
