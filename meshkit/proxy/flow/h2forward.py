"""Forwarding one request when either side speaks HTTP/2.

``forward`` hands an attempt here when the client is an HTTP/2 stream
(``H2Downstream``) or the destination speaks HTTP/2 (an app declared
``http2``/``grpc``, or another sidecar for an HTTP/2 client: ALPN ``h2``, one
multiplexed connection per endpoint).  The one case that stays on HTTP/1.1
upstream is an HTTP/2 client to an ``http1`` app (``_exchange_http1``).

Full duplex: the request body is pumped in its own task while the response
streams back, each side moving only as fast as the other end's window (or
socket) allows, so nothing is held beyond one window per direction.
Trailers cross in both directions between HTTP/2 peers (gRPC status).  An
HTTP/1.1 client gets the response's trailers only when it sent ``te: trailers``
and the response is chunked (RFC 9112 7.1.2): such a request travels over
HTTP/2 between sidecars, the one hop protocol here that carries trailers.
Without ``te: trailers`` (or with a ``content-length`` response) they are
dropped, as RFC 9110 6.5.1 allows a proxy to do.

Which protocol carries an HTTP/1.1 client's request between sidecars is read
once from ``MESHKIT_SIDECAR_PROTOCOL`` (``http1``, the default: pooled
HTTP/1.1; ``h2``: one multiplexed HTTP/2 connection per endpoint), kept for
measuring one against the other (benchmarks/hop.py ``--sidecar-protocol``).

Failures map across hops: a refused stream (REFUSED_STREAM, or GOAWAY naming
an older stream) is retried once on a fresh connection; any other reset
before the response head is ``502 UC`` (left to the caller with
``answer_failures=False``); a reset after it resets the client's stream (or
closes the client's HTTP/1.1 connection).  A new connection to an instance of
a service takes a ticket from that service's circuit breaker
(``attempt.connection_breaker``); when none is admitted the answer is ``503 UO``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal, Protocol

import trio
from h2.errors import ErrorCodes

from meshkit.proxy.codec.headers import HOP_BY_HOP, rewrite_response_headers
from meshkit.proxy.codec.messages import (
    Body,
    EndOfBody,
    Headers,
    NeedData,
    ProtocolRefusal,
    RequestHead,
    ResponseHead,
)
from meshkit.proxy.config import AppTarget, Endpoint, Limits
from meshkit.proxy.flow.attempt import (
    Outcome,
    connection_breaker,
    describe_destination,
)
from meshkit.proxy.flow.attempt import upstream_head as upstream_head_for
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.downstream import Downstream, DownstreamGone
from meshkit.proxy.flow.h2downstream import H2Downstream
from meshkit.proxy.flow.replay import RequestBodySource
from meshkit.proxy.net.h2conn import Http2Stream, StreamError
from meshkit.proxy.net.transport import ConnectFailure, connect_app, connect_endpoint
from meshkit.proxy.policy.breaker import ConnectionLimitReached
from meshkit.proxy.policy.flags import OVERFLOW

BodyEvent = Body | EndOfBody | NeedData


class ResponseSink(Protocol):
    """Where a response streams to: an HTTP/1.1 connection or an HTTP/2 stream."""

    async def send_response_head(self, head: ResponseHead, *, end_stream: bool = False) -> None: ...

    async def send_response_body(self, data: bytes) -> None: ...

    async def send_response_trailers(self, trailers: Headers) -> None: ...

    async def end_response(self) -> None: ...

    async def send_whole_response(self, head: ResponseHead, body: bytes) -> None: ...


class Http1ResponseSink:
    """A response to an HTTP/1.1 client.

    Trailers are written only when ``send_trailers`` (the client sent ``te:
    trailers``) and the codec framed the body as chunked; otherwise they are
    dropped and the body simply ends.
    """

    def __init__(self, downstream: Downstream, *, send_trailers: bool = False) -> None:
        self._downstream = downstream
        self._send_trailers = send_trailers

    async def send_response_head(self, head: ResponseHead, *, end_stream: bool = False) -> None:
        codec = self._downstream.codec
        data = codec.send_head(head)
        if end_stream:
            data += codec.send_end()
        await self._downstream.send(data)

    async def send_response_body(self, data: bytes) -> None:
        await self._downstream.send(self._downstream.codec.send_body(data))

    async def send_response_trailers(self, trailers: Headers) -> None:
        end = self._downstream.codec.send_end()
        if self._send_trailers and end == LAST_CHUNK:
            end = chunked_trailer_section(trailers)
        await self._downstream.send(end)

    async def end_response(self) -> None:
        await self._downstream.send(self._downstream.codec.send_end())

    async def send_whole_response(self, head: ResponseHead, body: bytes) -> None:
        codec = self._downstream.codec
        await self._downstream.send(
            codec.send_head(head) + codec.send_body(body) + codec.send_end()
        )


LAST_CHUNK = b"0\r\n\r\n"

# Fields a trailer section must not carry (RFC 9110 6.5.1): framing, routing, hop-by-hop.
FORBIDDEN_TRAILERS = HOP_BY_HOP | {b"content-length", b"content-type", b"host"}


def chunked_trailer_section(trailers: Headers) -> bytes:
    """The last chunk of a chunked body carrying ``trailers`` (RFC 9112 7.1.2)."""
    lines = b"".join(
        name + b": " + value + b"\r\n"
        for name, value in trailers
        if name.lower() not in FORBIDDEN_TRAILERS and not name.startswith(b":")
    )
    return b"0\r\n" + lines + b"\r\n"


SidecarProtocol = Literal["http1", "h2"]


def sidecar_protocol_from(environ: dict[str, str] | os._Environ[str]) -> SidecarProtocol:
    """``MESHKIT_SIDECAR_PROTOCOL`` as a protocol name (``http1`` when unset or unknown)."""
    return "h2" if environ.get("MESHKIT_SIDECAR_PROTOCOL", "").lower() == "h2" else "http1"


SIDECAR_PROTOCOL: SidecarProtocol = sidecar_protocol_from(os.environ)


class _Failed(Exception):
    def __init__(self, reason: str, *, refused: bool = False, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused
        self.timed_out = timed_out


def speaks_http2(
    downstream: object,
    destination: Endpoint | AppTarget,
    *,
    head: RequestHead | None = None,
    sidecar_protocol: SidecarProtocol = SIDECAR_PROTOCOL,
) -> bool:
    """Whether this exchange goes through ``forward_http2``.

    Always for an HTTP/2 client and an ``http2`` app; for an HTTP/1.1 client
    to another sidecar, when that hop is HTTP/2 or the client accepts trailers.
    """
    if isinstance(downstream, H2Downstream):
        return True
    if isinstance(destination, AppTarget):
        return destination.protocol == "http2"
    return sidecar_protocol == "h2" or (head is not None and _accepts_trailers(head.headers))


async def forward_http2(
    *,
    plane: DataPlane,
    downstream: Downstream | H2Downstream,
    head: RequestHead,
    target: bytes,
    destination: Endpoint | AppTarget,
    cluster_name: str,
    limits: Limits,
    append_forwarded_for: bool,
    body: RequestBodySource | None,
    on_response: Callable[[ResponseHead], ResponseHead | None] | None,
    answer_failures: bool,
) -> Outcome:
    """``forward`` for exchanges where a side speaks HTTP/2 (same arguments, same rules)."""
    source: RequestBodySource = downstream if body is None else body
    sink: ResponseSink = (
        downstream
        if isinstance(downstream, H2Downstream)
        else Http1ResponseSink(downstream, send_trailers=_accepts_trailers(head.headers))
    )
    upstream_head = upstream_head_for(
        plane,
        downstream,
        head,
        target=target,
        append_forwarded_for=append_forwarded_for,
        chunked=False,
        http_version=b"2",
    )
    if _accepts_trailers(head.headers):
        # gRPC needs ``te: trailers`` end to end; it is the one hop-by-hop value HTTP/2 keeps.
        upstream_head.headers.append((b"te", b"trailers"))
    what = describe_destination(destination, cluster_name)
    client_is_h2 = isinstance(downstream, H2Downstream)
    status = 0
    for attempt in (1, 2):
        try:
            if isinstance(destination, AppTarget) and destination.protocol == "http1":
                return await _exchange_http1(
                    plane,
                    downstream,
                    head,
                    upstream_head,
                    destination,
                    source,
                    sink,
                    limits,
                    on_response,
                    answer_failures,
                )
            stream, first = await _open(
                plane, destination, limits, upstream_head, source, cluster_name
            )
        except ConnectionLimitReached:
            breaker = connection_breaker(plane, destination, cluster_name)
            assert breaker is not None
            reason = breaker.overflow_reason("connections")
            return await _failure(downstream, OVERFLOW, 503, reason, answer_failures)
        except ConnectFailure as failure:
            plane.metrics.record_connect_failure(cluster=cluster_name)
            return await _failure(
                downstream, "UF", 503, f"upstream connect error: {failure.reason}", answer_failures
            )
        except StreamError as error:
            if attempt == 1:
                continue
            return await _failure(downstream, "UC", 502, f"{what}: {error}", answer_failures)
        try:
            # Errors leave the nursery as themselves, not wrapped in an ExceptionGroup.
            relay_error: Exception | None = None
            answered = False
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump_request, stream, first, source, downstream)
                try:
                    status, answered = await _relay_response(
                        stream, sink, limits, on_response, plane
                    )
                except (_Failed, _ResponseBroken, DownstreamGone) as error:
                    relay_error = error
                finally:
                    nursery.cancel_scope.cancel()
            if relay_error is not None:
                raise relay_error
            if not answered:
                stream.reset(ErrorCodes.CANCEL)
                return Outcome(
                    status=status,
                    flag="-",
                    keep_alive=True,
                    answered=False,
                    reason="response held back for a retry",
                )
            return Outcome(status=status, flag="-", keep_alive=not plane.draining)
        except _Failed as failed:
            if failed.refused and attempt == 1 and isinstance(first, EndOfBody):
                continue  # the peer never processed it and there was no body to lose
            if failed.timed_out:
                return await _failure(
                    downstream, "UT", 504, f"{what} {failed.reason}", answer_failures
                )
            return await _failure(downstream, "UC", 502, f"{what} {failed.reason}", answer_failures)
        except _ResponseBroken as broken:
            stream.reset(ErrorCodes.CANCEL)
            if client_is_h2:
                assert isinstance(downstream, H2Downstream)
                downstream.abort_response(broken.error_code)
            return Outcome(status=broken.status, flag="UC", keep_alive=False)
        except DownstreamGone:
            stream.reset(ErrorCodes.CANCEL)
            return Outcome(status=status, flag="DC", keep_alive=False)
        finally:
            plane.h2_upstreams.stream_finished()
    raise AssertionError("unreachable: the second attempt always returns")


class _ResponseBroken(Exception):
    def __init__(self, status: int, error_code: int) -> None:
        super().__init__(status)
        self.status = status
        self.error_code = error_code


async def _open(
    plane: DataPlane,
    destination: Endpoint | AppTarget,
    limits: Limits,
    head: RequestHead,
    source: RequestBodySource,
    cluster_name: str,
) -> tuple[Http2Stream, BodyEvent]:
    """A stream carrying ``head``, and the body's first event (END_STREAM if it ended)."""
    first = source.poll_body_event()
    breaker = connection_breaker(plane, destination, cluster_name)

    async def connect() -> trio.abc.Stream:
        if isinstance(destination, Endpoint):
            return await connect_endpoint(
                destination, timeout=limits.connect_timeout, tls=plane.tls, alpn="h2"
            )
        return await connect_app(destination, timeout=limits.connect_timeout)

    stream, _reused = await plane.h2_upstreams.open_stream(
        (destination.host, destination.port),
        head,
        connect=connect,
        end_stream=isinstance(first, EndOfBody),
        open_ticket=None if breaker is None else breaker.try_open_connection,
    )
    return stream, first


async def _pump_request(
    stream: Http2Stream,
    first: BodyEvent,
    source: RequestBodySource,
    downstream: Downstream | H2Downstream,
) -> None:
    """Send the request body (and trailers) upstream as the upstream's window allows."""
    if isinstance(first, EndOfBody):
        return  # END_STREAM went with the head
    event: BodyEvent = first
    try:
        await source.send_continue_if_expected()
        while True:
            if isinstance(event, NeedData):
                await source.receive_body_bytes()
            elif isinstance(event, Body):
                await stream.send_body(event.data)
            else:
                break
            event = source.poll_body_event()
        trailers = downstream.request_trailers if isinstance(downstream, H2Downstream) else None
        if trailers:
            await stream.send_trailers(trailers)
        else:
            await stream.end()
    except (DownstreamGone, ProtocolRefusal):
        stream.reset(ErrorCodes.CANCEL)
        if isinstance(downstream, H2Downstream):
            downstream.abort_response(ErrorCodes.CANCEL)
    except StreamError:
        return


async def _relay_response(
    stream: Http2Stream,
    sink: ResponseSink,
    limits: Limits,
    on_response: Callable[[ResponseHead], ResponseHead | None] | None,
    plane: DataPlane,
) -> tuple[int, bool]:
    """Stream the response to ``sink``: (status, whether it was sent)."""
    with trio.move_on_after(limits.idle_timeout) as waiting:
        try:
            response = await stream.receive_response()
        except StreamError as error:
            refused = error.error_code == ErrorCodes.REFUSED_STREAM
            raise _Failed(f"reset the stream: {error.reason or error}", refused=refused) from None
    if waiting.cancelled_caught:
        raise _Failed(f"sent nothing for {limits.idle_timeout:g}s", timed_out=True)
    headers = rewrite_response_headers(response.headers)
    head = ResponseHead(status=response.status, headers=headers, reason=response.reason)
    if on_response is not None:
        chosen = on_response(head)
        if chosen is None:
            return response.status, False
        head = chosen
    if stream.peer_ended and stream.trailers is None:
        # The whole response is here (the common small one): one write downstream.
        body = b"".join([chunk async for chunk in stream.receive_body()])
        if body:
            await sink.send_whole_response(head, body)
        else:
            await sink.send_response_head(head, end_stream=True)
        return response.status, True
    await sink.send_response_head(head)
    while True:
        with trio.move_on_after(limits.idle_timeout) as waiting:
            try:
                chunk = await stream.receive_chunk()
            except StreamError as error:
                raise _ResponseBroken(response.status, error.error_code) from None
        if waiting.cancelled_caught:
            raise _ResponseBroken(response.status, ErrorCodes.CANCEL)
        if not chunk:
            break
        await sink.send_response_body(chunk)
    if stream.trailers:
        await sink.send_response_trailers(stream.trailers)
    else:
        await sink.end_response()
    return response.status, True


def _accepts_trailers(headers: Headers) -> bool:
    return any(name == b"te" and b"trailers" in value.lower() for name, value in headers)


async def _failure(
    downstream: Downstream | H2Downstream, flag: str, status: int, reason: str, answer: bool
) -> Outcome:
    if not answer:
        return Outcome(status=0, flag=flag, keep_alive=True, answered=False, reason=reason)
    keep = await downstream.reply(status, (reason + "\n").encode(), reason=reason, flag=flag)
    return Outcome(status=status, flag=flag, keep_alive=keep)


async def _exchange_http1(
    plane: DataPlane,
    downstream: Downstream | H2Downstream,
    head: RequestHead,
    upstream_head: RequestHead,
    app: AppTarget,
    source: RequestBodySource,
    sink: ResponseSink,
    limits: Limits,
    on_response: Callable[[ResponseHead], ResponseHead | None] | None,
    answer_failures: bool,
) -> Outcome:
    """An HTTP/2 client's request to an ``http1`` app: one pooled HTTP/1.1 exchange.

    A body of unknown length goes chunked; request trailers are dropped
    (HTTP/1.1 apps rarely read them), response trailers cannot arise.
    """
    first = source.poll_body_event()
    has_length = any(name == b"content-length" for name, _ in head.headers)
    chunked = not isinstance(first, EndOfBody) and not has_length
    request = RequestHead(
        method=upstream_head.method,
        target=upstream_head.target,
        headers=[
            *upstream_head.headers,
            *([(b"transfer-encoding", b"chunked")] if chunked else []),
        ],
    )
    try:
        upstream = await plane.pool.acquire(
            (app.host, app.port),
            limits=limits,
            connect=lambda: connect_app(app, timeout=limits.connect_timeout),
        )
    except ConnectFailure as failure:
        return await _failure(
            downstream, "UF", 503, f"upstream connect error: {failure.reason}", answer_failures
        )
    codec = upstream.codec
    status = 0
    try:
        await upstream.stream.send_all(codec.send_head(request))
        event: BodyEvent = first
        while not isinstance(event, EndOfBody):
            if isinstance(event, NeedData):
                await source.receive_body_bytes()
            else:
                await upstream.stream.send_all(codec.send_body(event.data))
            event = source.poll_body_event()
        await upstream.stream.send_all(codec.send_end())
        # The head and the latest body bytes are held while the codec has more to
        # say without a read, so a small response leaves as one write; they go out
        # before any wait for the app, so a streamed response is never held back.
        held_head: ResponseHead | None = None
        held_body = b""

        async def send_held() -> None:
            nonlocal held_head, held_body
            if held_head is not None:
                await sink.send_response_head(held_head)
                held_head = None
            if held_body:
                await sink.send_response_body(held_body)
                held_body = b""

        while True:
            response_event = codec.next_event()
            if isinstance(response_event, NeedData):
                await send_held()
                with trio.move_on_after(limits.idle_timeout) as waiting:
                    data = await upstream.stream.receive_some(65536)
                if waiting.cancelled_caught:
                    raise _Failed(f"sent nothing for {limits.idle_timeout:g}s", timed_out=True)
                if not data and status == 0:
                    raise _Failed("closed the connection before responding")
                codec.receive_data(data)
            elif isinstance(response_event, ResponseHead):
                status = response_event.status
                response = ResponseHead(
                    status=status, headers=rewrite_response_headers(response_event.headers)
                )
                if on_response is not None:
                    chosen = on_response(response)
                    if chosen is None:
                        await plane.pool.discard(upstream)
                        return Outcome(
                            status=status,
                            flag="-",
                            keep_alive=True,
                            answered=False,
                            reason="response held back for a retry",
                        )
                    response = chosen
                held_head = response
            elif isinstance(response_event, Body):
                if held_body:
                    await send_held()
                held_body = response_event.data
            elif isinstance(response_event, EndOfBody):
                if held_head is not None and held_body:
                    await sink.send_whole_response(held_head, held_body)
                elif held_head is not None:
                    await sink.send_response_head(held_head, end_stream=True)
                else:
                    await send_held()
                    await sink.end_response()
                await plane.pool.release(upstream)
                return Outcome(status=status, flag="-", keep_alive=True)
            else:
                raise _Failed("connection closed by the app")
    except (DownstreamGone, ProtocolRefusal):
        await plane.pool.discard(upstream)
        return Outcome(status=status, flag="DC", keep_alive=False)
    except (_Failed, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
        await plane.pool.discard(upstream)
        reason = error.reason if isinstance(error, _Failed) else f"connection lost: {error}"
        if status:
            if isinstance(downstream, H2Downstream):
                downstream.abort_response()
            return Outcome(status=status, flag="UC", keep_alive=False)
        return await _failure(downstream, "UC", 502, f"the local app {reason}", answer_failures)
    except BaseException:
        await plane.pool.discard(upstream)
        raise
