"""mTLS on real loopback sockets: ``connect_endpoint``, ``accept_inbound``, XFCC.

``mesh_identities`` (also used by the sidecar tests) issues real certificates
from a throw-away root, exactly as the control plane does.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

from meshkit.ca import Issuer, MeshTlsContexts, RootCA, generate_key, make_csr, spiffe_id
from meshkit.ca.tls import SIDECAR_SERVER_ALPN
from meshkit.proxy.codec.headers import forwarded_client_cert, rewrite_request_headers
from meshkit.proxy.config import Endpoint
from meshkit.proxy.net.tlsstream import TlsStream
from meshkit.proxy.net.transport import (
    ConnectFailure,
    InboundRefused,
    accept_inbound,
    connect_endpoint,
)

CATALOG = spiffe_id("shop", "catalog")
FRONTEND = spiffe_id("shop", "frontend")


def issue_contexts(issuer: Issuer, identity: str, *, lifetime: float = 3600) -> MeshTlsContexts:
    key = generate_key()
    cert_pem = issuer.sign_csr(
        make_csr(key, identity), issuer.tokens.issue(identity, ttl=60), lifetime=lifetime
    )
    return MeshTlsContexts.build(cert_pem, key, issuer.root.pem, server_alpn=SIDECAR_SERVER_ALPN)


def mesh_identities(directory: Path, *services: str) -> dict[str, MeshTlsContexts]:
    """TLS contexts for ``services`` of mesh ``shop``, issued by a root made in ``directory``."""
    issuer = Issuer(root=RootCA.load_or_create(directory, mesh="shop"))
    return {service: issue_contexts(issuer, spiffe_id("shop", service)) for service in services}


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return Issuer(root=RootCA.load_or_create(tmp_path / "ca", mesh="shop"))


Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def endpoint(port: int, identity: str | None = CATALOG) -> Endpoint:
    return Endpoint(instance="catalog-0", host="127.0.0.1", port=port, identity=identity)


async def echo_identity_server(
    contexts: MeshTlsContexts | None, mode: str, seen: list[str | Exception | None]
) -> Handler:
    async def handler(stream: trio.SocketStream) -> None:
        try:
            accepted, identity = await accept_inbound(
                stream, tls=contexts, mode="strict" if mode == "strict" else "permissive"
            )
        except InboundRefused as refused:
            seen.append(refused)
            await trio.aclose_forcefully(stream)
            return
        seen.append(identity)
        async with accepted:
            data = await accepted.receive_some(100)
            await accepted.send_all(b"echo:" + data)

    return handler


async def test_mtls_round_trip_verifies_both_identities(issuer: Issuer) -> None:
    server = issue_contexts(issuer, CATALOG)
    client = issue_contexts(issuer, FRONTEND)
    seen: list[str | Exception | None] = []
    async with tcp_server(await echo_identity_server(server, "strict", seen)) as port:
        stream = await connect_endpoint(endpoint(port), timeout=5, tls=client)
        assert isinstance(stream, TlsStream)
        assert stream.selected_alpn_protocol() == "http/1.1"  # offered h2 too
        await stream.send_all(b"ping")
        assert await stream.receive_some(100) == b"echo:ping"
        await stream.aclose()
    assert seen == [FRONTEND]


async def test_an_endpoint_with_the_wrong_identity_is_a_connect_failure(issuer: Issuer) -> None:
    impostor = issue_contexts(issuer, spiffe_id("shop", "billing"))
    client = issue_contexts(issuer, FRONTEND)
    seen: list[str | Exception | None] = []
    async with tcp_server(await echo_identity_server(impostor, "strict", seen)) as port:
        with pytest.raises(ConnectFailure) as failure:
            await connect_endpoint(endpoint(port), timeout=5, tls=client)
    assert "failed the identity check" in failure.value.reason
    assert "expected peer spiffe://meshkit.local/ns/shop/sa/catalog" in failure.value.reason
    assert "sa/billing" in failure.value.reason


async def test_another_roots_certificate_is_refused_on_both_sides(
    issuer: Issuer, tmp_path: Path
) -> None:
    foreign = issue_contexts(
        Issuer(root=RootCA.load_or_create(tmp_path / "other", mesh="shop")), FRONTEND
    )
    server = issue_contexts(issuer, CATALOG)
    seen: list[str | Exception | None] = []
    async with tcp_server(await echo_identity_server(server, "strict", seen)) as port:
        with pytest.raises(ConnectFailure) as failure:
            await connect_endpoint(endpoint(port), timeout=5, tls=foreign)
    assert "TLS handshake with instance 'catalog-0'" in failure.value.reason
    assert "CERTIFICATE_VERIFY_FAILED" in failure.value.reason


async def test_strict_inbound_refuses_plaintext_and_permissive_accepts_both(
    issuer: Issuer,
) -> None:
    server = issue_contexts(issuer, CATALOG)
    client = issue_contexts(issuer, FRONTEND)
    for mode, plaintext_works in (("strict", False), ("permissive", True)):
        seen: list[str | Exception | None] = []
        async with tcp_server(await echo_identity_server(server, mode, seen)) as port:
            plain = await trio.open_tcp_stream("127.0.0.1", port)
            await plain.send_all(b"GET / HTTP/1.1\r\n\r\n")
            answer = b""
            with trio.move_on_after(5):
                answer = await plain.receive_some(100)
            await plain.aclose()
            assert (answer == b"echo:GET / HTTP/1.1\r\n\r\n") is plaintext_works
            secure = await connect_endpoint(endpoint(port), timeout=5, tls=client)
            await secure.send_all(b"x")
            assert await secure.receive_some(100) == b"echo:x"
            await secure.aclose()
        refusal = seen[0]
        if plaintext_works:
            assert seen == [None, FRONTEND]
        else:
            assert isinstance(refusal, InboundRefused) and "handshake failed" in refusal.reason
            assert seen[1] == FRONTEND


async def test_tls_1_2_clients_are_refused(issuer: Issuer) -> None:
    server = issue_contexts(issuer, CATALOG)
    seen: list[str | Exception | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with tcp_server(await echo_identity_server(server, "strict", seen)) as port:
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, context)
        with pytest.raises(trio.BrokenResourceError):
            await stream.do_handshake()
        await trio.aclose_forcefully(stream)
        with trio.fail_after(5):
            while not seen:
                await trio.sleep(0.01)
    assert isinstance(seen[0], InboundRefused)


async def test_without_certificate_an_identified_endpoint_is_refused_before_connecting() -> None:
    with pytest.raises(ConnectFailure) as failure:
        await connect_endpoint(endpoint(1), timeout=5, tls=None)
    assert "has no certificate" in failure.value.reason


def test_xfcc_is_set_from_the_verified_peer_only() -> None:
    headers = rewrite_request_headers(
        [(b"host", b"catalog"), (b"x-forwarded-client-cert", b"By=evil;URI=spiffe://x/admin")],
        client_address=None,
        append_forwarded_for=False,
        identity=FRONTEND,
        local_identity=CATALOG,
        chunked=False,
    )
    values = [value for name, value in headers if name == b"x-forwarded-client-cert"]
    assert values == [f"By={CATALOG};URI={FRONTEND}".encode()]
    stripped = rewrite_request_headers(
        [(b"host", b"catalog"), (b"x-forwarded-client-cert", b"URI=spiffe://x/admin")],
        client_address=None,
        append_forwarded_for=False,
        identity=None,
        chunked=False,
    )
    assert all(name != b"x-forwarded-client-cert" for name, _ in stripped)
    assert forwarded_client_cert(local_identity=None, peer_identity='a;b="c"') == b'URI="a;b=\\"c\\""'
