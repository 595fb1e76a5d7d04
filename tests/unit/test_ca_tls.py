"""TLS contexts, exercised with real TLS handshakes over in-memory trio streams."""

from __future__ import annotations

import os
import ssl
import stat
import time
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshkit.ca import (
    EXPIRY_GRACE,
    Issuer,
    MeshTlsContexts,
    PeerIdentityMismatch,
    RootCA,
    client_context,
    generate_key,
    make_csr,
    server_context,
    spiffe_id,
    verify_peer_identity,
)
from meshkit.ca import tls as tls_module
from meshkit.ca.workload import PrivateKey, private_key_pem

CATALOG = spiffe_id("shop", "catalog")
FRONTEND = spiffe_id("shop", "frontend")
BILLING = spiffe_id("shop", "billing")


@attrs.frozen
class Credentials:
    cert_pem: bytes
    key: PrivateKey
    root_pem: bytes


def _credentials(issuer: Issuer, identity: str) -> Credentials:
    key = generate_key()
    token = issuer.tokens.issue(identity, ttl=60)
    cert_pem = issuer.sign_csr(make_csr(key, identity), token, lifetime=600)
    return Credentials(cert_pem=cert_pem, key=key, root_pem=issuer.root.pem)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(root=RootCA.load_or_create(tmp_path_factory.mktemp("ca"), mesh="shop"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(root=RootCA.load_or_create(tmp_path_factory.mktemp("other"), mesh="shop"))


def _server(issuer: Issuer, identity: str = CATALOG) -> ssl.SSLContext:
    c = _credentials(issuer, identity)
    return server_context(c.cert_pem, c.key, c.root_pem)


def _client(issuer: Issuer, identity: str = FRONTEND) -> ssl.SSLContext:
    c = _credentials(issuer, identity)
    return client_context(c.cert_pem, c.key, c.root_pem)


@attrs.define
class Conversation:
    server_saw: str | None = None
    server_error: BaseException | None = None
    client_saw: str | None = None
    client_error: BaseException | None = None
    client_received: bytes = b""
    alpn: str | None = None


async def _converse(
    client: ssl.SSLContext, server: ssl.SSLContext, *, expect_server: str | None = None
) -> Conversation:
    """Handshake both ends in memory; the server sends b"hello" only to a verified client."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client_stream = trio.SSLStream(client_raw, client, server_hostname=None)
    server_stream = trio.SSLStream(server_raw, server, server_side=True)
    result = Conversation()

    async def serve() -> None:
        try:
            await server_stream.do_handshake()
            result.server_saw = verify_peer_identity(server_stream, None)
            await server_stream.send_all(b"hello")
        except (trio.BrokenResourceError, PeerIdentityMismatch) as error:
            result.server_error = error
        finally:
            await trio.aclose_forcefully(server_stream)

    async def call() -> None:
        try:
            await client_stream.do_handshake()
            result.alpn = client_stream.selected_alpn_protocol()
            result.client_saw = verify_peer_identity(client_stream, expect_server)
            result.client_received = bytes(await client_stream.receive_some(100))
        except (trio.BrokenResourceError, PeerIdentityMismatch) as error:
            result.client_error = error
        finally:
            await trio.aclose_forcefully(client_stream)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            nursery.start_soon(call)
    return result


async def test_mutual_tls_between_two_services(issuer: Issuer) -> None:
    result = await _converse(_client(issuer), _server(issuer), expect_server=CATALOG)
    assert result.server_saw == FRONTEND
    assert result.client_saw == CATALOG
    assert result.client_received == b"hello"
    assert result.alpn == "h2"


def _credentials_issued_ago(issuer: Issuer, identity: str, *, ago: float) -> Credentials:
    """Credentials with a 60-second life that began ``ago`` seconds before now."""
    past = Issuer(root=issuer.root, clock=lambda: time.time() - ago)
    key = generate_key()
    cert_pem = past.sign_csr(
        make_csr(key, identity), past.tokens.issue(identity, ttl=60), lifetime=60
    )
    return Credentials(cert_pem=cert_pem, key=key, root_pem=issuer.root.pem)


@pytest.mark.parametrize("side", ["client", "server"])
async def test_a_peer_certificate_expired_within_the_grace_is_accepted(
    issuer: Issuer, side: str
) -> None:
    """A stopped control plane must not stop the data plane: 40 s past notAfter still works
    (OpenSSL still verifies the chain and the key; only the time check is ours)."""
    late = _credentials_issued_ago(issuer, CATALOG if side == "server" else FRONTEND, ago=100)
    if side == "server":
        server = server_context(late.cert_pem, late.key, late.root_pem)
        result = await _converse(_client(issuer), server, expect_server=CATALOG)
    else:
        client = client_context(late.cert_pem, late.key, late.root_pem)
        result = await _converse(client, _server(issuer), expect_server=CATALOG)
    assert (result.server_saw, result.client_saw) == (FRONTEND, CATALOG)
    assert result.client_received == b"hello"


@pytest.mark.parametrize("side", ["client", "server"])
async def test_a_peer_certificate_expired_beyond_the_grace_is_refused(
    issuer: Issuer, side: str
) -> None:
    late = _credentials_issued_ago(
        issuer, CATALOG if side == "server" else FRONTEND, ago=60 + EXPIRY_GRACE + 5
    )
    if side == "server":
        server = server_context(late.cert_pem, late.key, late.root_pem)
        result = await _converse(_client(issuer), server, expect_server=CATALOG)
        error = result.client_error
    else:
        client = client_context(late.cert_pem, late.key, late.root_pem)
        result = await _converse(client, _server(issuer), expect_server=CATALOG)
        error = result.server_error
    assert isinstance(error, PeerIdentityMismatch)
    assert f"more than the {EXPIRY_GRACE:g}s of grace ago" in str(error)
    assert result.client_received == b""


async def test_a_certificate_not_yet_valid_is_refused(issuer: Issuer) -> None:
    early = _credentials_issued_ago(issuer, CATALOG, ago=-3600)
    server = server_context(early.cert_pem, early.key, early.root_pem)
    result = await _converse(_client(issuer), server, expect_server=CATALOG)
    assert isinstance(result.client_error, PeerIdentityMismatch)
    assert "is not valid before" in str(result.client_error)


async def test_client_refuses_a_server_of_the_wrong_service(issuer: Issuer) -> None:
    result = await _converse(_client(issuer), _server(issuer, BILLING), expect_server=CATALOG)
    assert isinstance(result.client_error, PeerIdentityMismatch)
    assert f"expected peer {CATALOG} but it presented {BILLING}" in str(result.client_error)
    assert result.client_received == b""


async def test_server_refuses_a_client_without_certificate(issuer: Issuer) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cadata=issuer.root.pem.decode())
    result = await _converse(anonymous, _server(issuer))
    assert isinstance(result.server_error, trio.BrokenResourceError)
    assert result.server_saw is None
    assert result.client_received == b""


async def test_server_refuses_a_client_of_another_root(issuer: Issuer, stranger: Issuer) -> None:
    foreign = _credentials(stranger, FRONTEND)
    client = client_context(foreign.cert_pem, foreign.key, issuer.root.pem)
    result = await _converse(client, _server(issuer))
    assert result.server_error is not None
    assert result.client_received == b""


async def test_client_refuses_a_server_of_another_root(issuer: Issuer, stranger: Issuer) -> None:
    foreign = _credentials(stranger, CATALOG)
    server = server_context(foreign.cert_pem, foreign.key, issuer.root.pem)
    result = await _converse(_client(issuer), server)
    assert result.client_error is not None
    assert result.client_saw is None


async def test_tls_1_2_is_refused(issuer: Issuer) -> None:
    old = _client(issuer)
    old.minimum_version = ssl.TLSVersion.TLSv1_2
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    result = await _converse(old, _server(issuer))
    assert result.server_error is not None
    assert result.client_error is not None


async def test_optional_client_certificate(issuer: Issuer) -> None:
    c = _credentials(issuer, CATALOG)
    permissive = server_context(c.cert_pem, c.key, c.root_pem, require_client_cert=False)
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cadata=issuer.root.pem.decode())
    result = await _converse(anonymous, permissive)
    assert isinstance(result.server_error, PeerIdentityMismatch)
    assert "no certificate" in str(result.server_error)


async def test_renewal_swaps_contexts_without_dropping_a_connection(issuer: Issuer) -> None:
    first = _credentials(issuer, CATALOG)
    current = MeshTlsContexts.build(first.cert_pem, first.key, first.root_pem)
    assert current.identity == CATALOG
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client_stream = trio.SSLStream(client_raw, _client(issuer), server_hostname=None)
    server_stream = trio.SSLStream(server_raw, current.server, server_side=True)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_stream.do_handshake)
            nursery.start_soon(server_stream.do_handshake)
        old_peer_cert = client_stream.getpeercert(binary_form=True)

        second = _credentials(issuer, CATALOG)
        current = MeshTlsContexts.build(
            second.cert_pem, private_key_pem(second.key), second.root_pem
        )

        await server_stream.send_all(b"still here")
        assert await client_stream.receive_some(100) == b"still here"
        await client_stream.send_all(b"me too")
        assert await server_stream.receive_some(100) == b"me too"
        await trio.aclose_forcefully(client_stream)
        await trio.aclose_forcefully(server_stream)

    result = await _converse(_client(issuer), current.server, expect_server=CATALOG)
    assert result.client_received == b"hello"
    assert old_peer_cert != x509.load_pem_x509_certificate(second.cert_pem).public_bytes(
        serialization.Encoding.DER
    )


def test_contexts_are_tls13_only(issuer: Issuer) -> None:
    server, client = _server(issuer), _client(issuer)
    for context in (server, client):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_3
        assert context.verify_mode == ssl.CERT_REQUIRED
    assert not client.check_hostname


def test_key_files_are_private_and_removed(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[Path, int, int]] = []
    real_directory = tls_module._private_temporary_directory
    real_write = tls_module._write_private

    def directory_in_tmp() -> str:
        made = real_directory()
        os.rmdir(made)
        os.mkdir(tmp_path / "keys", 0o700)
        return str(tmp_path / "keys")

    def recording_write(path: Path, data: bytes) -> None:
        real_write(path, data)
        seen.append(
            (path, stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode))
        )
        if path.name == "key.pem":
            assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()

    monkeypatch.setattr(tls_module, "_private_temporary_directory", directory_in_tmp)
    monkeypatch.setattr(tls_module, "_write_private", recording_write)
    _server(issuer)
    assert {mode for _, mode, _ in seen} == {0o600}
    assert {directory_mode for _, _, directory_mode in seen} == {0o700}
    assert {path.name for path, _, _ in seen} == {"cert.pem", "key.pem"}
    assert not (tmp_path / "keys").exists()


def test_private_temporary_directory_is_owner_only() -> None:
    made = Path(tls_module._private_temporary_directory())
    try:
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    finally:
        made.rmdir()
