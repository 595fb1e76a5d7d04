"""One try to send a request to one destination, whichever protocols carry it.

``forward`` picks the upstream protocol and hands an ``Attempt`` to
``h1forward`` (HTTP/1.1 upstream) or ``h2forward`` (HTTP/2 upstream); both
build the upstream request head the same way, name the destination the same
way in their reasons, connect with the same breaker tickets, let the pipeline
hold a response back for a retry through the same hook, and end with the same
``Outcome``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from meshkit.proxy.codec.headers import rewrite_request_headers
from meshkit.proxy.codec.messages import ClientRefusal, ProtocolRefusal, RequestHead, ResponseHead
from meshkit.proxy.config import AppTarget, Endpoint, Limits
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.exchange import Downstream
from meshkit.proxy.flow.replay import RequestBodySource
from meshkit.proxy.net.transport import Alpn, ConnectFailure, connect_app, connect_endpoint
from meshkit.proxy.policy.breaker import ConnectionLimitReached, Ticket
from meshkit.proxy.policy.flags import OVERFLOW

ResponseHook = Callable[[ResponseHead], ResponseHead | None]
"""Sees the endpoint's response head; returns the head to send, or None to hold it back."""


@attrs.define(kw_only=True, eq=False)
class Outcome:
    """How a forwarded exchange ended: the status sent, the flag, and keep-alive.

    ``answered`` is False when nothing was sent to the client: the failure was
    left to the caller (``answer_failures=False``; ``reason`` says what
    happened) or ``on_response`` held the response back (``status`` is the
    endpoint's).
    """

    status: int
    flag: str
    keep_alive: bool
    answered: bool = True
    reason: str = ""


def held_back(status: int) -> Outcome:
    """The outcome when ``on_response`` kept the endpoint's response from the client."""
    return Outcome(
        status=status,
        flag="-",
        keep_alive=True,
        answered=False,
        reason="response held back for a retry",
    )


def request_has_body(head: RequestHead) -> bool:
    """Whether an HTTP/1.1 request has a body: chunked, or a ``content-length`` above 0."""
    return any(
        name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
        for name, value in head.headers
    )


def served_scheme(plane: DataPlane, downstream: Downstream) -> bytes:
    """``https`` when ``downstream`` came in on the HTTPS gateway, else ``http``."""
    config = plane.config
    listener = None if config is None else plane.listener(config, downstream.listener_name)
    return b"https" if listener is not None and listener.tls else b"http"


def describe_destination(destination: Endpoint | AppTarget, cluster_name: str) -> str:
    """The destination as reasons name it: an instance of a service, or the local app."""
    if isinstance(destination, Endpoint):
        return f"instance '{destination.instance}' of '{cluster_name}'"
    return "the local app"


@attrs.frozen(kw_only=True)
class Attempt:
    """What one try needs: the request, its client, its destination and the rules."""

    plane: DataPlane
    downstream: Downstream
    head: RequestHead
    target: bytes
    destination: Endpoint | AppTarget
    cluster_name: str
    limits: Limits
    append_forwarded_for: bool
    source: RequestBodySource
    on_response: ResponseHook | None
    answer_failures: bool

    @property
    def what(self) -> str:
        return describe_destination(self.destination, self.cluster_name)

    @property
    def key(self) -> tuple[str, int]:
        return (self.destination.host, self.destination.port)

    def upstream_head(self, *, chunked: bool, http_version: bytes) -> RequestHead:
        """The head as it goes to the destination: new target, headers rewritten for the hop."""
        return RequestHead(
            method=self.head.method,
            target=self.target,
            headers=rewrite_request_headers(
                self.head.headers,
                client_address=self.downstream.peer_address,
                append_forwarded_for=self.append_forwarded_for,
                identity=self.downstream.identity,
                local_identity=self.plane.local_identity,
                chunked=chunked,
                edge_scheme=served_scheme(self.plane, self.downstream),
            ),
            http_version=http_version,
        )

    @property
    def open_ticket(self) -> Callable[[], Ticket | None] | None:
        """The breaker admission a new connection needs: its service's; the local app has none."""
        if isinstance(self.destination, Endpoint):
            return self.plane.destinations.state(self.cluster_name).breaker.try_open_connection
        return None

    async def connect(self, *, alpn: Alpn = "http/1.1") -> trio.abc.Stream:
        timeout = self.limits.connect_timeout
        if isinstance(self.destination, Endpoint):
            return await connect_endpoint(
                self.destination, timeout=timeout, tls=self.plane.tls, alpn=alpn
            )
        return await connect_app(self.destination, timeout=timeout)

    def commit(self, head: ResponseHead) -> ResponseHead | None:
        """The response head to send, or None when the pipeline holds it back for a retry."""
        return head if self.on_response is None else self.on_response(head)

    async def fail(self, flag: str, status: int, reason: str) -> Outcome:
        """A failure before the response: answered, or left to the caller."""
        if not self.answer_failures:
            return Outcome(status=0, flag=flag, keep_alive=True, answered=False, reason=reason)
        keep = await self.downstream.reply(
            status, (reason + "\n").encode(), reason=reason, flag=flag
        )
        return Outcome(status=status, flag=flag, keep_alive=keep)

    async def not_connected(self, error: ConnectionLimitReached | ConnectFailure) -> Outcome:
        """No connection: none admitted by the breaker (``UO``) or none made (``UF``)."""
        if isinstance(error, ConnectionLimitReached):
            breaker = self.plane.destinations.state(self.cluster_name).breaker
            return await self.fail(OVERFLOW, 503, breaker.overflow_reason("connections"))
        self.plane.metrics.record_connect_failure(cluster=self.cluster_name)
        return await self.fail("UF", 503, f"upstream connect error: {error.reason}")

    async def refused(self, refusal: ProtocolRefusal) -> Outcome:
        """What the client sent was refused (413, 408, malformed: never blamed on the
        endpoint), or the endpoint's response was malformed (``UPE``)."""
        downstream = self.downstream
        if downstream.response_started:
            downstream.abort_response()
            return Outcome(status=0, flag="DC", keep_alive=False)
        if refusal.status == 413 or isinstance(refusal, ClientRefusal):
            await downstream.refuse(refusal.status, refusal.reason)
            return Outcome(status=refusal.status, flag="-", keep_alive=False)
        reason = f"{self.what}: {refusal.reason}"
        await downstream.refuse(refusal.status, reason, flag="UPE")
        return Outcome(status=refusal.status, flag="UPE", keep_alive=False)
