"""Real sockets on 127.0.0.1, probed by real clients: openssl s_client, curl, a trio client.

A small trio TLS server uses the mesh's contexts; each accepted connection
reports what happened (the peer's SPIFFE ID, or the error) on a channel.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from meshkit.ca import (
    Issuer,
    PeerIdentityMismatch,
    RootCA,
    client_context,
    gateway_server_context,
    generate_key,
    make_csr,
    server_context,
    spiffe_id,
    verify_peer_identity,
)
from meshkit.ca.root import write_file_atomically
from meshkit.ca.workload import private_key_pem
from tests.unit.test_ca_issuer import gateway_serving_certificate

pytestmark = pytest.mark.e2e

CATALOG = spiffe_id("shop", "catalog")
FRONTEND = spiffe_id("shop", "frontend")
BILLING = spiffe_id("shop", "billing")

Respond = Callable[[trio.SSLStream[trio.SocketStream]], Awaitable[None]]


@attrs.frozen
class Files:
    cert: Path
    key: Path


@attrs.frozen
class Running:
    port: int
    outcomes: trio.MemoryReceiveChannel[str | BaseException]


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(root=RootCA.load_or_create(tmp_path_factory.mktemp("ca"), mesh="shop"))


def _issue(issuer: Issuer, identity: str, directory: Path) -> tuple[bytes, Files]:
    key = generate_key()
    cert_pem = issuer.sign_csr(make_csr(key, identity), issuer.tokens.issue(identity, ttl=60))
    directory.mkdir(mode=0o700, exist_ok=True)
    files = Files(cert=directory / "cert.pem", key=directory / "key.pem")
    files.cert.write_bytes(cert_pem)
    write_file_atomically(files.key, private_key_pem(key), mode=0o600)
    return cert_pem, files


async def _say_hello(stream: trio.SSLStream[trio.SocketStream]) -> None:
    await stream.send_all(b"hello from the mesh\n")


@asynccontextmanager
async def tls_server(
    context: ssl.SSLContext, respond: Respond = _say_hello
) -> AsyncIterator[Running]:
    send, receive = trio.open_memory_channel[str | BaseException](16)

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.do_handshake()
            peer = verify_peer_identity(stream, None) if stream.getpeercert(True) else "anonymous"
            await send.send(peer)
            await respond(stream)
            await stream.aclose()
        except (trio.BrokenResourceError, PeerIdentityMismatch) as error:
            await send.send(error)
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_ssl_over_tcp_listeners(0, context, host="127.0.0.1")
        await nursery.start(trio.serve_listeners, handle, listeners)
        transport = listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        port = transport.socket.getsockname()[1]
        yield Running(port=port, outcomes=receive)
        nursery.cancel_scope.cancel()


async def _s_client(port: int, root: Path, *extra: str) -> str:
    with trio.fail_after(15):
        done = await trio.run_process(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-CAfile",
                str(root),
                "-verify_return_error",
                "-ign_eof",
                "-showcerts",
                *extra,
            ],
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


async def _next_outcome(running: Running) -> str | BaseException:
    with trio.fail_after(10):
        return await running.outcomes.receive()


def _tls_reason(outcome: str | BaseException) -> str:
    """The OpenSSL reason behind a refused handshake (trio wraps the ``ssl.SSLError``)."""
    assert isinstance(outcome, trio.BrokenResourceError), outcome
    cause = outcome.__cause__
    assert isinstance(cause, ssl.SSLError), cause
    return str(cause.reason)


@pytest.fixture
def mesh_server(issuer: Issuer, tmp_path: Path) -> ssl.SSLContext:
    cert_pem, files = _issue(issuer, CATALOG, tmp_path / "catalog")
    return server_context(cert_pem, files.key.read_bytes(), issuer.root.pem)


async def test_valid_mesh_certificate_is_served_and_accepted(
    issuer: Issuer, mesh_server: ssl.SSLContext, tmp_path: Path
) -> None:
    _, client = _issue(issuer, FRONTEND, tmp_path / "frontend")
    async with tls_server(mesh_server) as running:
        output = await _s_client(
            running.port, issuer.root.path, "-cert", str(client.cert), "-key", str(client.key)
        )
        assert await _next_outcome(running) == FRONTEND
    assert "hello from the mesh" in output
    assert "Verify return code: 0 (ok)" in output
    assert "TLSv1.3" in output
    served = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", output, re.S)
    assert served is not None
    san = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName"],
        input=served.group(0).encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert f"URI:{CATALOG}" in san


async def test_client_without_certificate_gets_no_data(
    issuer: Issuer, mesh_server: ssl.SSLContext
) -> None:
    async with tls_server(mesh_server) as running:
        output = await _s_client(running.port, issuer.root.path)
        refusal = await _next_outcome(running)
    assert "hello from the mesh" not in output
    assert _tls_reason(refusal) == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


async def test_client_certificate_of_another_ca_is_refused(
    issuer: Issuer, mesh_server: ssl.SSLContext, tmp_path: Path
) -> None:
    stranger = Issuer(root=RootCA.load_or_create(tmp_path / "other-ca", mesh="shop"))
    _, foreign = _issue(stranger, FRONTEND, tmp_path / "foreign")
    async with tls_server(mesh_server) as running:
        output = await _s_client(
            running.port, issuer.root.path, "-cert", str(foreign.cert), "-key", str(foreign.key)
        )
        refusal = await _next_outcome(running)
    assert "hello from the mesh" not in output
    assert _tls_reason(refusal) == "CERTIFICATE_VERIFY_FAILED"


async def test_tls_1_2_is_refused(
    issuer: Issuer, mesh_server: ssl.SSLContext, tmp_path: Path
) -> None:
    _, client = _issue(issuer, FRONTEND, tmp_path / "frontend")
    async with tls_server(mesh_server) as running:
        output = await _s_client(
            running.port,
            issuer.root.path,
            "-tls1_2",
            "-cert",
            str(client.cert),
            "-key",
            str(client.key),
        )
        refusal = await _next_outcome(running)
    assert "hello from the mesh" not in output
    assert _tls_reason(refusal) == "UNSUPPORTED_PROTOCOL"


async def test_trio_client_refuses_the_wrong_service(
    issuer: Issuer, mesh_server: ssl.SSLContext, tmp_path: Path
) -> None:
    cert_pem, files = _issue(issuer, FRONTEND, tmp_path / "frontend")
    context = client_context(cert_pem, files.key.read_bytes(), issuer.root.pem)
    async with tls_server(mesh_server) as running:
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", running.port, ssl_context=context)
        async with stream:
            await stream.do_handshake()
            with pytest.raises(
                PeerIdentityMismatch, match=f"expected peer {BILLING} but it presented {CATALOG}"
            ):
                verify_peer_identity(stream, BILLING)
            assert verify_peer_identity(stream, CATALOG) == CATALOG
            assert await _next_outcome(running) == FRONTEND


async def _answer_http(stream: trio.SSLStream[trio.SocketStream]) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return
        request += chunk
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")


async def _curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(15):
        return await trio.run_process(
            [
                "curl",
                "--silent",
                "--show-error",
                "--http1.1",
                "--noproxy",
                "*",
                "--max-time",
                "10",
                *args,
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_curl_trusts_the_gateway_with_the_root(issuer: Issuer, host: str) -> None:
    cert_pem, key_pem = gateway_serving_certificate(issuer)
    async with tls_server(gateway_server_context(cert_pem, key_pem), _answer_http) as running:
        url = f"https://{host}:{running.port}/"
        pinned = ["--resolve", f"localhost:{running.port}:127.0.0.1"]
        trusted = await _curl(*pinned, "--cacert", str(issuer.root.path), url)
        assert trusted.returncode == 0, trusted.stderr
        assert trusted.stdout == b"ok\n"
        old_browser = await _curl(
            *pinned, "--cacert", str(issuer.root.path), "--tlsv1.2", "--tls-max", "1.2", url
        )
        assert old_browser.stdout == b"ok\n"
        untrusted = await _curl(*pinned, url)
        assert untrusted.returncode == 60
        assert await _next_outcome(running) == "anonymous"
        assert await _next_outcome(running) == "anonymous"
        assert isinstance(await _next_outcome(running), trio.BrokenResourceError)


async def test_meshkit_ca_command_as_a_process(tmp_path: Path) -> None:
    with trio.fail_after(30):
        shown = await trio.run_process(
            [sys.executable, "-m", "meshkit.cli", "ca", "--export", "exported.pem"],
            cwd=tmp_path,
            capture_stdout=True,
            capture_stderr=True,
        )
        fingerprint = await trio.run_process(
            ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", "exported.pem"],
            cwd=tmp_path,
            capture_stdout=True,
        )
    output = shown.stdout.decode()
    assert f"root certificate: {tmp_path / '.meshkit' / 'ca' / 'root.pem'}" in output
    assert fingerprint.stdout.decode().strip().split("=", 1)[1] in output
    assert (tmp_path / "exported.pem").read_bytes() == (
        tmp_path / ".meshkit/ca/root.pem"
    ).read_bytes()
