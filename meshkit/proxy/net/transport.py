"""The places where transport security slots in: mTLS between sidecars, HTTPS at the edge.

* ``connect_endpoint``: every connection to an endpoint (another sidecar's
  inbound listener) is TLS 1.3 with this sidecar's current client context;
  after the handshake the peer must present the endpoint's SPIFFE ID
  (``Endpoint.identity``), else the connection is closed before any HTTP byte
  and the request is answered ``503 UF`` with the reason.
* ``accept_inbound``: an inbound listener requires the TLS handshake, with a
  client certificate of the mesh (``strict``), or peeks at the first byte and
  also accepts plaintext (``permissive``: 0x16 starts a TLS ClientHello).  The
  verified peer identity goes to the app in ``x-forwarded-client-cert``.
* ``accept_https``: the gateway's HTTPS listener (no client certificate).
* ``connect_app``: the local app, always plaintext on the same host.

Contexts are passed in by the caller for each connection: after a renewal new
connections get the new contexts and open ones keep theirs.

The servers select ``h2`` when offered, else ``http/1.1``
(``meshkit.ca.tls.SIDECAR_SERVER_ALPN``); ``connect_endpoint`` offers exactly
the protocol its caller will speak (``alpn``), so a pooled HTTP/1.1 connection
never lands on an HTTP/2 server and a multiplexed HTTP/2 one always does.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Literal

import trio

from meshkit.ca.errors import PeerIdentityMismatch
from meshkit.ca.tls import MeshTlsContexts, verify_peer_identity
from meshkit.proxy.config import AppTarget, Endpoint, MtlsMode
from meshkit.proxy.net.tlsstream import TlsStream

TLS_RECORD_HANDSHAKE = 0x16
Alpn = Literal["http/1.1", "h2"]


class ConnectFailure(Exception):
    """An endpoint could not be reached; ``reason`` is for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InboundRefused(Exception):
    """An accepted connection failed the listener's transport rules; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _tls_error_text(error: BaseException) -> str:
    cause = error.__cause__ if isinstance(error, trio.BrokenResourceError) else error
    if isinstance(cause, ssl.SSLError):
        return cause.reason or cause.strerror or str(cause)
    return str(cause or error) or type(error).__name__


async def _open_tcp(host: str, port: int, what: str, timeout: float) -> trio.SocketStream:
    with trio.move_on_after(timeout) as scope:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as error:
            detail = error.strerror or str(error)
            raise ConnectFailure(
                f"could not connect to {what} at {host}:{port}: {detail.lower()}"
            ) from None
        stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        return stream
    assert scope.cancelled_caught
    raise ConnectFailure(
        f"could not connect to {what} at {host}:{port}: timed out after {timeout:g}s"
    )


async def connect_endpoint(
    endpoint: Endpoint,
    *,
    timeout: float,
    tls: MeshTlsContexts | None,
    alpn: Alpn = "http/1.1",
) -> trio.abc.Stream:
    """An mTLS stream to ``endpoint``'s sidecar whose peer is ``endpoint.identity``.

    ``tls=None`` (a sidecar without a certificate, as in configs without
    identities) gives plaintext, but only to an endpoint that expects none.
    Raises ``ConnectFailure`` with the reason (TCP, handshake, identity, ALPN),
    all within ``timeout`` seconds.  With ``alpn="h2"`` the peer must select
    h2 (a plaintext stream then carries h2c with prior knowledge).
    """
    what = f"instance '{endpoint.instance}'"
    if tls is None:
        if endpoint.identity is not None:
            raise ConnectFailure(
                f"this sidecar has no certificate, so it cannot open mTLS to {what} "
                f"({endpoint.identity})"
            )
        return await _open_tcp(endpoint.host, endpoint.port, what, timeout)
    deadline = trio.current_time() + timeout
    tcp = await _open_tcp(endpoint.host, endpoint.port, what, timeout)
    context = tls.client if alpn == "h2" or tls.client_http1 is None else tls.client_http1
    stream = TlsStream(tcp, context)
    try:
        with trio.move_on_after(max(0.0, deadline - trio.current_time())) as scope:
            await stream.do_handshake()
        if scope.cancelled_caught:
            raise ConnectFailure(f"TLS handshake with {what} timed out after {timeout:g}s")
        verify_peer_identity(stream, endpoint.identity)
        protocol = stream.selected_alpn_protocol() or "http/1.1"
        if protocol != alpn:
            raise ConnectFailure(
                f"{what} selected ALPN {protocol!r} where this sidecar asked for {alpn!r}"
            )
    except PeerIdentityMismatch as mismatch:
        await trio.aclose_forcefully(tcp)
        raise ConnectFailure(f"{what} failed the identity check: {mismatch}") from None
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as error:
        await trio.aclose_forcefully(tcp)
        raise ConnectFailure(
            f"TLS handshake with {what} at {endpoint.host}:{endpoint.port} failed: "
            f"{_tls_error_text(error)}"
        ) from None
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


async def connect_app(app: AppTarget, *, timeout: float) -> trio.abc.Stream:
    """A stream to the local app (always plaintext: it is on the same host)."""
    return await _open_tcp(app.host, app.port, "the local app", timeout)


async def _peek_first_byte(stream: trio.abc.Stream) -> int | None:
    """The first byte the client sent, left unread; None for streams that cannot peek."""
    if not isinstance(stream, trio.SocketStream):
        return None
    try:
        data = await stream.socket.recv(1, trio.socket.MSG_PEEK)
    except OSError as error:
        raise InboundRefused(f"connection failed: {error.strerror or error}") from None
    if not data:
        raise InboundRefused("the client closed the connection before sending anything")
    return data[0]


async def _server_handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext, what: str
) -> TlsStream:
    if not isinstance(stream, trio.SocketStream):
        raise InboundRefused(f"{what} needs a TCP connection, not {type(stream).__name__}")
    tls_stream = TlsStream(stream, context, server_side=True)
    try:
        await tls_stream.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as error:
        raise InboundRefused(f"{what} handshake failed: {_tls_error_text(error)}") from None
    return tls_stream


async def accept_inbound(
    stream: trio.abc.Stream,
    *,
    tls: MeshTlsContexts | None,
    mode: MtlsMode,
    member_problem: Callable[[str], str | None] = lambda identity: None,
) -> tuple[trio.abc.Stream, str | None]:
    """The stream to read requests from and the caller's verified SPIFFE ID (or None).

    Raises ``InboundRefused``: strict mode and no valid mesh client certificate
    (or no TLS at all), a failed handshake, a peer ``member_problem`` finds
    fault with (not of the mesh).  The caller bounds the wait.
    """
    if mode == "permissive":
        first = await _peek_first_byte(stream)
        if first is not None and first != TLS_RECORD_HANDSHAKE:
            return stream, None
    if tls is None:
        raise InboundRefused("mTLS is required here but this sidecar has no certificate")
    tls_stream = await _server_handshake(stream, tls.server, "mTLS")
    try:
        identity = verify_peer_identity(tls_stream, None)
    except PeerIdentityMismatch as mismatch:
        raise InboundRefused(str(mismatch)) from None
    problem = member_problem(identity)
    if problem is not None:
        raise InboundRefused(f"the peer is not of this mesh: {problem}")
    return tls_stream, identity


async def accept_https(stream: trio.abc.Stream, context: ssl.SSLContext) -> trio.abc.Stream:
    """The gateway's HTTPS: the TLS handshake with its serving certificate (no client cert)."""
    return await _server_handshake(stream, context, "TLS")
