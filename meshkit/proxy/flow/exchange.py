"""The client side of one exchange, whichever protocol the client speaks.

``Downstream`` is what the request flow reads a request body from and writes
a response to: ``Http1Downstream`` (one HTTP/1.1 connection, one request at a
time) and ``H2Downstream`` (one HTTP/2 stream) both implement it, so the
forwarding code (``forward``, ``h2forward``) and the local replies (``l7``)
never ask which one they hold.

The request half counts the body against ``Limits.max_body_bytes`` and, until
the response starts, paces it (``policy.pace``: a body that stalls for
``body_timeout`` or trickles below ``min_body_rate`` is ``408``); once the
response streams (full duplex, bidirectional gRPC) each wait is bounded by
``idle_timeout`` only.  A subclass says how to take an already
received piece (``poll_body_event``) and how to wait for more
(``_wait_for_body``).  The response half streams a response (head, body,
trailers), sends a complete one in one write, answers locally
(``send_local_response``, ``reply``) or gives up on it (``abort_response``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import trio
from h2.errors import ErrorCodes

from meshkit.proxy.codec.messages import (
    Body,
    ClientRefusal,
    EndOfBody,
    Headers,
    NeedData,
    ProtocolRefusal,
    ResponseHead,
)
from meshkit.proxy.config import Limits
from meshkit.proxy.policy.grpcreply import for_client
from meshkit.proxy.policy.pace import BodyPace
from meshkit.proxy.policy.router import FLAG_HEADER, REASON_HEADER

if TYPE_CHECKING:
    from meshkit.proxy.flow.dataplane import DataPlane

BodyEvent = Body | EndOfBody | NeedData
# What a downstream reads from and writes to: a connection (HTTP/1.1) or one stream (HTTP/2).
StreamT = TypeVar("StreamT")
PLAIN_TEXT = b"text/plain; charset=utf-8"


class DownstreamGone(Exception):
    """The client closed, broke or stalled the connection; nothing more can be sent."""


def accepts_trailers(headers: Headers) -> bool:
    """Whether a request's ``te`` field accepts trailers in the response."""
    return any(name == b"te" and b"trailers" in value.lower() for name, value in headers)


def local_response_head(
    status: int, body: bytes, *, content_type: bytes, reason: str | None, flag: str
) -> ResponseHead:
    """The head of a response the sidecar writes itself (admin, refusals, failures)."""
    headers: Headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    if reason is not None:
        headers.append((REASON_HEADER, reason.encode("ascii", "replace")))
    if flag != "-":
        headers.append((FLAG_HEADER, flag.encode()))
    return ResponseHead(status=status, headers=headers)


@attrs.frozen
class Client:
    """Who is at the other end of one accepted connection, and what it is served under.

    ``identity`` is the verified peer's SPIFFE ID (None without mTLS);
    ``peer_address`` the client's address as the socket says.
    """

    listener_name: str
    limits: Limits
    peer_address: str | None
    identity: str | None


class DownstreamOf(ABC, Generic[StreamT]):
    """One request's client: its request body in, its response out, over a ``StreamT``."""

    def __init__(
        self,
        *,
        stream: StreamT,
        plane: DataPlane,
        client: Client,
    ) -> None:
        self.stream = stream
        self.plane = plane
        self.client = client
        self.limits = client.limits
        self.listener_name = client.listener_name
        self.peer_address = client.peer_address
        self.identity = client.identity
        # Whether the current request is a gRPC call: local replies become trailers-only.
        self.grpc = False
        self.body_bytes = 0
        # Response bytes sent (HTTP/1.1: as framed; HTTP/2: body only), for the metrics.
        self.sent_bytes = 0
        self.response_started = False
        self._pace: BodyPace | None = None
        self._pace_from = 0  # body_bytes when the current request began
        self._open()

    def _begin_request(self) -> None:
        """A new request on this downstream (HTTP/1.1 keep-alive): a fresh body pace."""
        self.response_started = False
        self._pace = None
        self._pace_from = self.body_bytes

    def _open(self) -> None:
        """Set up the protocol's own state (a subclass's constructor)."""

    # ------------------------------------------------------------ the request body

    @abstractmethod
    def poll_body_event(self) -> BodyEvent:
        """The next piece of the request body if already received (no I/O)."""

    @abstractmethod
    async def _wait_for_body(self) -> None: ...

    @abstractmethod
    async def send_continue_if_expected(self) -> None: ...

    @property
    def request_trailers(self) -> Headers | None:
        """The request's trailers, once its body has been read to the end."""
        return None

    def _count_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        limit = self.limits.max_body_bytes
        if limit is not None and self.body_bytes > limit:
            raise ProtocolRefusal(413, f"request body over {limit} bytes")

    async def receive_body_bytes(self) -> None:
        """Wait for more of the request body: ``408`` (``ClientRefusal``) when it stalls or
        trickles before the response starts, ``DownstreamGone`` after ``idle_timeout``."""
        if self.response_started:
            with trio.move_on_after(self.limits.idle_timeout) as scope:
                await self._wait_for_body()
            if scope.cancelled_caught:
                raise DownstreamGone("request body stalled")
            return
        if self._pace is None:
            limits = self.limits
            self._pace = BodyPace(timeout=limits.body_timeout, min_rate=limits.min_body_rate)
        received = self.body_bytes - self._pace_from
        wait = self._pace.next_wait(received)
        started = trio.current_time()
        with trio.move_on_after(wait) as scope:
            await self._wait_for_body()
        self._pace.waited_for(trio.current_time() - started)
        if scope.cancelled_caught:
            raise ClientRefusal(408, self._pace.describe(received, wait))

    async def next_body_event(self) -> Body | EndOfBody:
        """The next piece of the request body, waiting for it if needed."""
        while True:
            event = self.poll_body_event()
            if not isinstance(event, NeedData):
                return event
            await self.receive_body_bytes()

    # ------------------------------------------------------------ the response

    @abstractmethod
    async def send_response_head(self, head: ResponseHead, *, end_stream: bool = False) -> None:
        """Start the response (a body follows unless ``end_stream``)."""

    @abstractmethod
    async def send_response_body(self, data: bytes, *, end_stream: bool = False) -> None: ...

    @abstractmethod
    async def end_response(self, trailers: Headers | None = None) -> None:
        """End the response body, with ``trailers`` where the client can take them."""

    @abstractmethod
    async def send_whole_response(self, head: ResponseHead, body: bytes) -> None:
        """A response whose body is all here: head and body in one write."""

    @abstractmethod
    def abort_response(self, error_code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """Give up on a response already started: the client learns it is incomplete."""

    async def send_local_response(self, head: ResponseHead, body: bytes) -> bool:
        """Send a complete response the sidecar made; True if the connection may be reused.

        To a gRPC request it goes as a trailers-only response (``grpcreply``).
        """
        head, body = for_client(head, body, grpc=self.grpc)
        return await self._send_local_response(head, body)

    @abstractmethod
    async def _send_local_response(self, head: ResponseHead, body: bytes) -> bool: ...

    @abstractmethod
    async def refuse(self, status: int, reason: str, *, flag: str = "-") -> None:
        """Answer a request that cannot go on (or reset it); the caller ends the exchange."""

    async def reply(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = PLAIN_TEXT,
        reason: str | None = None,
        flag: str = "-",
    ) -> bool:
        """Send a complete local response; True if the connection may be reused."""
        head = local_response_head(
            status, body, content_type=content_type, reason=reason, flag=flag
        )
        return await self.send_local_response(head, body)


# The request flow's view: a downstream whatever it reads from.
Downstream = DownstreamOf[Any]
