"""What one attempt to a destination shares, whichever protocol carries it.

``forward`` (HTTP/1.1) and ``h2forward`` (HTTP/2 on either side) each send a
request to one destination; both build the upstream request head the same
way, name the destination the same way in their reasons, take connection
tickets from the same breaker and end with the same ``Outcome``.
"""

from __future__ import annotations

from typing import Protocol

from meshkit.proxy.codec.headers import rewrite_request_headers
from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.config import AppTarget, Endpoint
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.policy.breaker import CircuitBreaker


class Outcome:
    """How a forwarded exchange ended: the status sent, the flag, and keep-alive.

    ``answered`` is False when nothing was sent to the client: the failure was
    left to the caller (``answer_failures=False``; ``reason`` says what
    happened) or ``on_response`` held the response back (``status`` is the
    endpoint's).
    """

    __slots__ = ("answered", "flag", "keep_alive", "reason", "status")

    def __init__(
        self, *, status: int, flag: str, keep_alive: bool, answered: bool = True, reason: str = ""
    ) -> None:
        self.status = status
        self.flag = flag
        self.keep_alive = keep_alive
        self.answered = answered
        self.reason = reason


class Client(Protocol):
    """The parts of a downstream (HTTP/1.1 or HTTP/2) an upstream head is built from."""

    peer_address: str | None
    identity: str | None


def upstream_head(
    plane: DataPlane,
    downstream: Client,
    head: RequestHead,
    *,
    target: bytes,
    append_forwarded_for: bool,
    chunked: bool,
    http_version: bytes,
) -> RequestHead:
    """``head`` as it goes to the destination: new target, headers rewritten for the hop."""
    return RequestHead(
        method=head.method,
        target=target,
        headers=rewrite_request_headers(
            head.headers,
            client_address=downstream.peer_address,
            append_forwarded_for=append_forwarded_for,
            identity=downstream.identity,
            local_identity=plane.local_identity,
            chunked=chunked,
        ),
        http_version=http_version,
    )


def request_has_body(head: RequestHead) -> bool:
    """Whether an HTTP/1.1 request has a body: chunked, or a ``content-length`` above 0."""
    return any(
        name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
        for name, value in head.headers
    )


def describe_destination(destination: Endpoint | AppTarget, cluster_name: str) -> str:
    """The destination as reasons name it: an instance of a service, or the local app."""
    if isinstance(destination, Endpoint):
        return f"instance '{destination.instance}' of '{cluster_name}'"
    return "the local app"


def connection_breaker(
    plane: DataPlane, destination: Endpoint | AppTarget, cluster_name: str
) -> CircuitBreaker | None:
    """The breaker whose ``max_connections`` bounds new connections to ``destination``.

    An endpoint's: its service's (``cluster_name``); the local app has none.
    """
    if isinstance(destination, Endpoint):
        return plane.destinations.state(cluster_name).breaker
    return None
