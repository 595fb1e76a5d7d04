"""``TlsStream`` on real loopback sockets, against Python's ``ssl`` and ``openssl``.

The peers are ``trio.SSLStream`` (Python's ssl module), another ``TlsStream``,
``openssl s_client`` (for TLS 1.3 KeyUpdate), raw sockets (garbage, stalls,
EOF without close_notify).  Contexts are the mesh's, from ``meshkit.ca``.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from meshkit.ca import Issuer, MeshTlsContexts, RootCA, generate_key, make_csr, spiffe_id
from meshkit.ca.tls import SIDECAR_SERVER_ALPN, verify_peer_identity
from meshkit.proxy.net.tlsstream import TlsStream

CATALOG = spiffe_id("shop", "catalog")
FRONTEND = spiffe_id("shop", "frontend")


def _issue(issuer: Issuer, identity: str) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization

    key = generate_key()
    cert = issuer.sign_csr(make_csr(key, identity), issuer.tokens.issue(identity, ttl=60))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert, key_pem


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(root=RootCA.load_or_create(tmp_path_factory.mktemp("ca"), mesh="shop"))


@pytest.fixture(scope="module")
def catalog(issuer: Issuer) -> MeshTlsContexts:
    cert, key = _issue(issuer, CATALOG)
    return MeshTlsContexts.build(cert, key, issuer.root.pem, server_alpn=SIDECAR_SERVER_ALPN)


@pytest.fixture(scope="module")
def frontend(issuer: Issuer) -> MeshTlsContexts:
    cert, key = _issue(issuer, FRONTEND)
    return MeshTlsContexts.build(cert, key, issuer.root.pem)


_OPENED: list[trio.SocketStream] = []


@pytest.fixture(autouse=True)
async def close_every_socket() -> AsyncIterator[None]:
    yield
    while _OPENED:
        await trio.aclose_forcefully(_OPENED.pop())


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected loopback TCP pair: (client end, server end), closed after the test."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    _OPENED.extend((client, server))
    return client, server


async def tls_pair(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts, *, python_client: bool = False
) -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """Handshaken (client, server): TlsStream both ends, or a trio.SSLStream client."""
    client_raw, server_raw = await tcp_pair()
    client: TlsStream | trio.SSLStream[trio.SocketStream]
    if python_client:
        client = trio.SSLStream(client_raw, frontend.client, server_hostname=None)
    else:
        client = TlsStream(client_raw, frontend.client)
    server = TlsStream(server_raw, catalog.server, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    return client, server


async def receive_exactly(stream: trio.abc.Stream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(65536)
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


async def test_mtls_handshake_both_ways_with_alpn_and_identities(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    # TlsStream client to a Python ssl server, then a Python ssl client to a TlsStream server.
    client_raw, server_raw = await tcp_pair()
    client = TlsStream(client_raw, frontend.client)
    python_server = trio.SSLStream(server_raw, catalog.server, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(python_server.do_handshake)
    assert client.selected_alpn_protocol() == "h2"
    assert verify_peer_identity(client, CATALOG) == CATALOG
    assert verify_peer_identity(python_server, FRONTEND) == FRONTEND
    await client.send_all(b"ping")
    assert await python_server.receive_some(10) == b"ping"
    await python_server.send_all(b"pong")
    assert await client.receive_some(10) == b"pong"
    assert client.transport_stream is client_raw

    python_client, server = await tls_pair(frontend, catalog, python_client=True)
    assert isinstance(server, TlsStream)
    assert verify_peer_identity(server, None) == FRONTEND
    assert server.selected_alpn_protocol() == "h2"
    await python_client.send_all(b"ping")
    assert await server.receive_some(10) == b"ping"


async def test_alpn_http1_only_client_gets_http1(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    assert frontend.client_http1 is not None
    client_raw, server_raw = await tcp_pair()
    client = TlsStream(client_raw, frontend.client_http1)
    server = TlsStream(server_raw, catalog.server, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "http/1.1"


@pytest.mark.parametrize("python_client", [False, True])
async def test_large_transfers_both_directions_at_once(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts, python_client: bool
) -> None:
    client, server = await tls_pair(frontend, catalog, python_client=python_client)
    up, down = os.urandom(3_000_000), os.urandom(5_000_000)
    got: dict[str, bytes] = {}

    async def pump(stream: trio.abc.Stream, data: bytes) -> None:
        for offset in range(0, len(data), 700_000):
            await stream.send_all(data[offset : offset + 700_000])

    async def drain(stream: trio.abc.Stream, name: str, size: int) -> None:
        got[name] = await receive_exactly(stream, size)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, up)
            nursery.start_soon(pump, server, down)
            nursery.start_soon(drain, server, "up", len(up))
            nursery.start_soon(drain, client, "down", len(down))
    assert got == {"up": up, "down": down}


async def test_close_notify_is_eof_and_aclose_sends_it(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    python_client, server = await tls_pair(frontend, catalog, python_client=True)
    await server.send_all(b"last words")
    await server.aclose()
    assert await receive_exactly(python_client, 10) == b"last words"
    assert await python_client.receive_some(10) == b""  # close_notify, not a ragged EOF
    await server.aclose()  # twice is fine
    with pytest.raises(trio.ClosedResourceError):
        await server.receive_some(10)


async def test_peer_closing_without_close_notify_is_eof(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    client, server = await tls_pair(frontend, catalog)
    assert isinstance(client, TlsStream)
    await client.send_all(b"abc")
    await client.transport_stream.aclose()  # FIN, no close_notify
    assert await receive_exactly(server, 3) == b"abc"
    assert await server.receive_some(10) == b""
    assert await server.receive_some(10) == b""


async def test_send_eof_half_closes_on_tls13(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    client, server = await tls_pair(frontend, catalog)
    assert isinstance(client, TlsStream)
    await client.send_all(b"request")
    await client.send_eof()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"more")
    assert await receive_exactly(server, 7) == b"request"
    assert await server.receive_some(10) == b""
    await server.send_all(b"answer after the peer's EOF")  # the other direction stays open
    assert await receive_exactly(client, 27) == b"answer after the peer's EOF"
    await server.aclose()
    assert await client.receive_some(10) == b""


async def test_garbage_instead_of_client_hello_breaks_with_the_ssl_reason(
    catalog: MeshTlsContexts,
) -> None:
    client_raw, server_raw = await tcp_pair()
    server = TlsStream(server_raw, catalog.server, server_side=True)
    await client_raw.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(trio.BrokenResourceError) as caught:
        await server.do_handshake()
    assert isinstance(caught.value.__cause__, ssl.SSLError)
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some(10)


async def test_eof_during_the_handshake_is_an_error(catalog: MeshTlsContexts) -> None:
    client_raw, server_raw = await tcp_pair()
    server = TlsStream(server_raw, catalog.server, server_side=True)
    await client_raw.aclose()
    with pytest.raises(trio.BrokenResourceError) as caught:
        await server.do_handshake()
    assert isinstance(caught.value.__cause__, ssl.SSLError)


async def test_a_stalled_handshake_ends_with_the_callers_cancel_scope(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    client_raw, server_raw = await tcp_pair()
    server = TlsStream(server_raw, catalog.server, server_side=True)
    with trio.move_on_after(0.3) as silent:
        await server.do_handshake()  # the client never speaks
    assert silent.cancelled_caught
    # A client that stops half-way through (its ClientHello cut short).
    client_raw, server_raw = await tcp_pair()
    hello = ssl.MemoryBIO(), ssl.MemoryBIO()
    probe = frontend.client.wrap_bio(*hello)
    with pytest.raises(ssl.SSLWantReadError):
        probe.do_handshake()
    await client_raw.send_all(hello[1].read()[:40])
    server = TlsStream(server_raw, catalog.server, server_side=True)
    with trio.move_on_after(0.3) as halfway:
        await server.do_handshake()
    assert halfway.cancelled_caught


async def test_cancelled_receive_leaves_the_stream_usable(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    client, server = await tls_pair(frontend, catalog)
    with trio.move_on_after(0.2) as scope:
        await server.receive_some(10)
    assert scope.cancelled_caught
    await client.send_all(b"late")
    assert await server.receive_some(10) == b"late"


async def test_cancelled_send_breaks_the_stream_and_aclose_does_not_wait(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    client, server = await tls_pair(frontend, catalog)
    with trio.move_on_after(0.3) as scope:
        await client.send_all(b"x" * 50_000_000)  # the peer reads nothing
    assert scope.cancelled_caught
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"more")
    with trio.fail_after(5):
        await client.aclose()
    await server.aclose()


async def test_two_tasks_receiving_at_once_is_a_bug_trio_names(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    client, server = await tls_pair(frontend, catalog)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.receive_some, 10)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await server.receive_some(10)
        await client.send_all(b"x")  # the first receive ends


async def test_session_tickets_from_a_python_server_are_not_data(
    issuer: Issuer, frontend: MeshTlsContexts
) -> None:
    cert, key = _issue(issuer, CATALOG)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.minimum_version = ssl.TLSVersion.TLSv1_3
    server_context.num_tickets = 3
    context_with_key(server_context, cert, key)
    client_raw, server_raw = await tcp_pair()
    client = TlsStream(client_raw, frontend.client)
    server = trio.SSLStream(server_raw, server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    await server.send_all(b"after the tickets")
    assert await receive_exactly(client, 17) == b"after the tickets"
    await client.send_all(b"reply")
    assert await receive_exactly(server, 5) == b"reply"


def context_with_key(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    directory = Path(os.environ.get("TMPDIR", "/tmp"))
    cert_path, key_path = (
        directory / f"tls-{os.getpid()}-c.pem",
        directory / f"tls-{os.getpid()}-k.pem",
    )
    try:
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        context.load_cert_chain(cert_path, key_path)
    finally:
        cert_path.unlink(missing_ok=True)
        key_path.unlink(missing_ok=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_key_update_requested_by_openssl_s_client(
    issuer: Issuer, catalog: MeshTlsContexts, tmp_path: Path
) -> None:
    cert, key = _issue(issuer, FRONTEND)
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "root.pem").write_bytes(issuer.root.pem)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3"]
    command += ["-cert", str(tmp_path / "cert.pem"), "-key", str(tmp_path / "key.pem")]
    command += ["-CAfile", str(tmp_path / "root.pem"), "-alpn", "http/1.1"]
    out = bytearray()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                lambda task_status: trio.run_process(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    check=False,
                    task_status=task_status,
                )
            )
            accepted = await listener.accept()
            _OPENED.append(accepted)
            server = TlsStream(accepted, catalog.server, server_side=True)
            await server.do_handshake()

            async def s_client_says(marker: bytes) -> None:
                while marker not in out:
                    chunk = await process.stdout.receive_some(65536)
                    assert chunk, out.decode(errors="replace")
                    out.extend(chunk)

            await process.stdin.send_all(b"hello\n")
            assert await receive_exactly(server, 6) == b"hello\n"
            await process.stdin.send_all(b"K\n")  # KeyUpdate, update_requested
            await s_client_says(b"KEYUPDATE")
            await process.stdin.send_all(b"world\n")
            assert await receive_exactly(server, 6) == b"world\n"  # under the new keys
            await server.send_all(b"bye from the new keys\n")
            await s_client_says(b"bye from the new keys")
            await server.aclose()
            await process.stdin.aclose()
    await listener.aclose()


async def test_a_busy_connection_yields_to_others(
    frontend: MeshTlsContexts, catalog: MeshTlsContexts
) -> None:
    client, server = await tls_pair(frontend, catalog)
    await client.send_all(os.urandom(60_000))
    await trio.sleep(0.2)  # all of it in the server's socket buffer: no read would block
    ticks = 0

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for _ in range(100):
            await server.receive_some(500)
        nursery.cancel_scope.cancel()
    assert ticks >= 100 // 16 - 1  # the other task's first turn may come after one yield
