"""Traffic mirroring: fire-and-forget copies of requests to another version (Istio's mirror).

A copy is sent in a task of a nursery that lives as long as the sidecar, not
the request, so the caller's answer never waits for it.  Its answer is read
and dropped; its failures are logged at debug level and never reach the
caller.  At most ``max_in_flight`` copies are in flight: beyond that a copy is
dropped rather than queued.  Only bodyless requests and bodies held whole in
memory (at most 64 KiB) are copied.  As Istio does, the copy's ``Host`` gets
``-shadow`` appended, so the mirror target can tell copies from real traffic.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable

import attrs
import trio

from meshkit.ca.tls import MeshTlsContexts
from meshkit.proxy.codec.messages import (
    Closed,
    EndOfBody,
    Headers,
    NeedData,
    ProtocolRefusal,
    RequestHead,
)
from meshkit.proxy.config import Endpoint, Limits
from meshkit.proxy.net.pool import ConnectionPool
from meshkit.proxy.net.streamio import receive_some, send_all
from meshkit.proxy.net.taskhome import TaskHome
from meshkit.proxy.net.transport import ConnectFailure, connect_endpoint
from meshkit.proxy.policy.breaker import ConnectionLimitReached, Ticket

log = logging.getLogger("meshkit.proxy")

DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_MIRROR_TIMEOUT = 10.0


def mirrored_headers(headers: Headers, body: bytes) -> Headers:
    """``headers`` for a copy: ``-shadow`` on the host, a plain ``content-length`` body."""
    result: Headers = []
    for name, value in headers:
        if name in (b"content-length", b"transfer-encoding"):
            continue
        if name == b"host":
            host, colon, port = value.partition(b":")
            value = host + b"-shadow" + colon + port
        result.append((name, value))
    if body:
        result.append((b"content-length", str(len(body)).encode()))
    return result


@attrs.frozen(kw_only=True)
class _Copy:
    """One copy to send: where, what, and the destination breaker's admission."""

    pool: ConnectionPool
    tls: MeshTlsContexts | None
    endpoint: Endpoint
    head: RequestHead
    body: bytes
    limits: Limits
    open_ticket: Callable[[], Ticket | None] | None


class Mirrors(TaskHome):
    """Admission and ownership of mirrored copies, sent in the nursery of ``run``."""

    def __init__(
        self,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout: float = DEFAULT_MIRROR_TIMEOUT,
    ) -> None:
        super().__init__()
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.in_flight = 0
        self.sent = 0
        self.dropped = 0

    def offer(
        self,
        *,
        pool: ConnectionPool,
        tls: MeshTlsContexts | None,
        endpoint: Endpoint,
        head: RequestHead,
        body: bytes,
        limits: Limits,
        open_ticket: Callable[[], Ticket | None] | None = None,
    ) -> bool:
        """Start sending a copy of ``head`` and ``body`` to ``endpoint``; False if dropped.

        ``open_ticket`` is the destination breaker's connection admission: a copy
        that would need a connection over ``max_connections`` is dropped.
        """
        if self._nursery is None or self.in_flight >= self.max_in_flight:
            self.dropped += 1
            return False
        self.in_flight += 1
        copy = _Copy(
            pool=pool,
            tls=tls,
            endpoint=endpoint,
            head=RequestHead(
                method=head.method, target=head.target, headers=mirrored_headers(head.headers, body)
            ),
            body=body,
            limits=limits,
            open_ticket=open_ticket,
        )
        self._nursery.start_soon(self._send, copy)
        return True

    async def _send(self, copy: _Copy) -> None:
        endpoint = copy.endpoint
        try:
            with trio.move_on_after(self.timeout):
                await _exchange(copy)
                self.sent += 1
        except (
            ConnectionLimitReached,
            ConnectFailure,
            ProtocolRefusal,
            ssl.SSLError,
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ) as error:
            log.debug("mirror copy to %s failed: %s", endpoint.instance, error)
        except Exception as error:  # a copy must never take the sidecar down
            log.warning("mirror copy to %s failed unexpectedly: %r", endpoint.instance, error)
        finally:
            self.in_flight -= 1


async def _exchange(copy: _Copy) -> None:
    """Send one copy and read its whole answer, which is dropped."""
    pool, endpoint, limits = copy.pool, copy.endpoint, copy.limits
    upstream = await pool.acquire(
        (endpoint.host, endpoint.port),
        limits=limits,
        connect=lambda: connect_endpoint(endpoint, timeout=limits.connect_timeout, tls=copy.tls),
        open_ticket=copy.open_ticket,
    )
    codec = upstream.codec
    done = False
    try:
        data = codec.send_head(copy.head)
        if copy.body:
            data += codec.send_body(copy.body)
        await send_all(upstream.stream, data + codec.send_end())
        while True:
            event = codec.next_event()
            if isinstance(event, EndOfBody):
                done = True
                return
            if isinstance(event, NeedData):
                chunk = await receive_some(upstream.stream, 65536)
                if not chunk:
                    return
                codec.receive_data(chunk)
            elif isinstance(event, Closed):
                return
    finally:
        if done:
            await pool.release(upstream)
        else:
            with contextlib.suppress(Exception):
                await pool.discard(upstream)
