"""The two places where transport security slots in.

Every connection to an endpoint goes through ``connect_endpoint`` and every
connection accepted on an inbound listener through ``accept_inbound``; mTLS
wraps the stream here and nowhere else.  Today both are plaintext TCP.
"""

from __future__ import annotations

import trio

from meshkit.proxy.config import AppTarget, Endpoint


class ConnectFailure(Exception):
    """An endpoint could not be reached; ``reason`` is for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _open_tcp(host: str, port: int, what: str, timeout: float) -> trio.abc.Stream:
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


async def connect_endpoint(endpoint: Endpoint, *, timeout: float) -> trio.abc.Stream:
    """A stream to ``endpoint``'s sidecar (plaintext now, mTLS later)."""
    return await _open_tcp(endpoint.host, endpoint.port, f"instance '{endpoint.instance}'", timeout)


async def connect_app(app: AppTarget, *, timeout: float) -> trio.abc.Stream:
    """A stream to the local app (always plaintext: it is on the same host)."""
    return await _open_tcp(app.host, app.port, "the local app", timeout)


async def accept_inbound(stream: trio.abc.Stream) -> tuple[trio.abc.Stream, str | None]:
    """The stream to read a request from and the caller's verified identity.

    Plaintext for now: no identity.  With mTLS this performs the handshake and
    returns the peer's SPIFFE ID.
    """
    return stream, None
