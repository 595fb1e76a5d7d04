"""Forwarding one request to an endpoint (or the local app) and its response back.

A sequential flow per request, no extra tasks: send the head, stream the
request body chunk by chunk, then stream the response back chunk by chunk.
Nothing is buffered beyond one received chunk.  (An endpoint that answers
before reading the whole request body works only while the body fits in the
socket buffers; full-duplex streaming is a later step.)

Failures are answered, never dropped: a connect failure is ``503 UF``, an
endpoint that breaks before its response head is ``502 UC``, one that is
silent for ``idle_timeout`` is ``504 UT``.  A kept-alive connection that turns
out to be closed by its peer is retried once on a fresh one when the request
had no body (nothing can have been processed twice).  A new connection to an
endpoint takes a ticket from its service's circuit breaker (``max_connections``,
held until the connection closes); when none is admitted the request is
answered ``503 UO`` at once, without connecting.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from meshkit.proxy.codec.headers import is_chunked, rewrite_response_headers
from meshkit.proxy.codec.messages import (
    Body,
    EndOfBody,
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
    request_has_body,
)
from meshkit.proxy.flow.attempt import upstream_head as upstream_head_for
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.downstream import RECEIVE_SIZE, Downstream, DownstreamGone
from meshkit.proxy.flow.h2downstream import H2Downstream
from meshkit.proxy.flow.h2forward import forward_http2, speaks_http2
from meshkit.proxy.flow.replay import RequestBodySource
from meshkit.proxy.net.pool import UpstreamConnection
from meshkit.proxy.net.streamio import receive_some, send_all
from meshkit.proxy.net.transport import ConnectFailure, connect_app, connect_endpoint
from meshkit.proxy.policy.breaker import ConnectionLimitReached
from meshkit.proxy.policy.flags import OVERFLOW

FLUSH_SIZE = 64 * 1024


class _UpstreamBroken(Exception):
    """The endpoint's connection failed; ``before_response`` says if nothing came back."""

    def __init__(self, reason: str, *, before_response: bool, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.before_response = before_response
        self.timed_out = timed_out


async def _open(
    plane: DataPlane, destination: Endpoint | AppTarget, limits: Limits
) -> trio.abc.Stream:
    if isinstance(destination, Endpoint):
        return await connect_endpoint(destination, timeout=limits.connect_timeout, tls=plane.tls)
    return await connect_app(destination, timeout=limits.connect_timeout)


async def _receive_from(upstream: UpstreamConnection, limits: Limits, *, got_head: bool) -> None:
    with trio.move_on_after(limits.idle_timeout) as scope:
        try:
            data = await receive_some(upstream.stream, RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            raise _UpstreamBroken(
                f"connection lost: {error}", before_response=not got_head
            ) from None
    if scope.cancelled_caught:
        raise _UpstreamBroken(
            f"sent nothing for {limits.idle_timeout:g}s",
            before_response=not got_head,
            timed_out=True,
        )
    if not data and not got_head:
        raise _UpstreamBroken("closed the connection before responding", before_response=True)
    upstream.codec.receive_data(data)


async def _send_to(upstream: UpstreamConnection, data: bytes | bytearray) -> None:
    try:
        await send_all(upstream.stream, data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
        raise _UpstreamBroken(f"connection lost: {error}", before_response=True) from None


async def forward(
    *,
    plane: DataPlane,
    downstream: Downstream | H2Downstream,
    head: RequestHead,
    target: bytes,
    destination: Endpoint | AppTarget,
    cluster_name: str,
    limits: Limits,
    append_forwarded_for: bool,
    body: RequestBodySource | None = None,
    on_response: Callable[[ResponseHead], ResponseHead | None] | None = None,
    answer_failures: bool = True,
) -> Outcome:
    """Forward ``head`` (and its body, read from ``body`` or else ``downstream``) to ``destination``.

    ``on_response`` sees the endpoint's response head and returns the head to
    send, or None to drop the response unsent (a retry will follow).  With
    ``answer_failures=False`` a failure before the response (UF, UC, UT) is
    returned unanswered for the caller to retry or answer.  When a side speaks
    HTTP/2 the exchange goes through ``h2forward`` under the same rules.
    """
    if isinstance(downstream, H2Downstream) or speaks_http2(downstream, destination, head=head):
        return await forward_http2(
            plane=plane,
            downstream=downstream,
            head=head,
            target=target,
            destination=destination,
            cluster_name=cluster_name,
            limits=limits,
            append_forwarded_for=append_forwarded_for,
            body=body,
            on_response=on_response,
            answer_failures=answer_failures,
        )
    chunked = is_chunked(head.headers)
    has_body = request_has_body(head)
    upstream_head = upstream_head_for(
        plane,
        downstream,
        head,
        target=target,
        append_forwarded_for=append_forwarded_for,
        chunked=chunked,
        http_version=b"1.1",
    )
    key = (destination.host, destination.port)
    what = describe_destination(destination, cluster_name)
    breaker = connection_breaker(plane, destination, cluster_name)
    for attempt in (1, 2):
        try:
            upstream = await plane.pool.acquire(
                key,
                limits=limits,
                connect=lambda: _open(plane, destination, limits),
                open_ticket=None if breaker is None else breaker.try_open_connection,
            )
        except ConnectionLimitReached:
            assert breaker is not None
            reason = breaker.overflow_reason("connections")
            if not answer_failures:
                return Outcome(
                    status=0, flag=OVERFLOW, keep_alive=True, answered=False, reason=reason
                )
            keep = await downstream.reply(
                503, (reason + "\n").encode(), reason=reason, flag=OVERFLOW
            )
            return Outcome(status=503, flag=OVERFLOW, keep_alive=keep)
        except ConnectFailure as failure:
            plane.metrics.record_connect_failure(cluster=cluster_name)
            reason = f"upstream connect error: {failure.reason}"
            if not answer_failures:
                return Outcome(status=0, flag="UF", keep_alive=True, answered=False, reason=reason)
            keep = await downstream.reply(503, (reason + "\n").encode(), reason=reason, flag="UF")
            return Outcome(status=503, flag="UF", keep_alive=keep)
        try:
            return await _exchange(
                plane,
                downstream,
                upstream,
                upstream_head,
                limits,
                downstream if body is None else body,
                on_response,
            )
        except _UpstreamBroken as broken:
            await plane.pool.discard(upstream)
            if broken.before_response and upstream.reused and not has_body and attempt == 1:
                continue
            if not broken.before_response:
                return Outcome(status=0, flag="UC", keep_alive=False)
            status, flag = (504, "UT") if broken.timed_out else (502, "UC")
            reason = f"{what} {broken.reason}"
            if not answer_failures:
                return Outcome(status=0, flag=flag, keep_alive=True, answered=False, reason=reason)
            keep = await downstream.reply(
                status, (reason + "\n").encode(), reason=reason, flag=flag
            )
            return Outcome(status=status, flag=flag, keep_alive=keep)
        except ProtocolRefusal as refusal:
            await plane.pool.discard(upstream)
            if refusal.status == 413:
                await downstream.refuse(413, refusal.reason)
                return Outcome(status=413, flag="-", keep_alive=False)
            reason = f"{what}: {refusal.reason}"
            await downstream.refuse(refusal.status, reason, flag="UPE")
            return Outcome(status=refusal.status, flag="UPE", keep_alive=False)
        except BaseException:
            await plane.pool.discard(upstream)
            raise
    raise AssertionError("unreachable: the second attempt always returns")


async def _exchange(
    plane: DataPlane,
    downstream: Downstream,
    upstream: UpstreamConnection,
    upstream_head: RequestHead,
    limits: Limits,
    body: RequestBodySource,
    on_response: Callable[[ResponseHead], ResponseHead | None] | None,
) -> Outcome:
    """One request/response on ``upstream``; releases it to the pool when reusable.

    Raises ``_UpstreamBroken`` (upstream failed) and ``ProtocolRefusal``
    (malformed response, 502; request body over the limit, 413); a downstream
    failure is reported as an outcome without keep-alive.
    """
    codec = upstream.codec
    # Writes are coalesced: bytes accumulate while the next event is already
    # parsed, and go out when the codec needs more input (or past FLUSH_SIZE),
    # so a small exchange costs one write per direction.
    pending = bytearray(codec.send_head(upstream_head))
    try:
        await body.send_continue_if_expected()
        while True:
            event = body.poll_body_event()
            if isinstance(event, NeedData):
                await _send_to(upstream, pending)
                pending.clear()
                await body.receive_body_bytes()
            elif isinstance(event, EndOfBody):
                pending += codec.send_end()
                await _send_to(upstream, pending)
                break
            else:
                pending += codec.send_body(event.data)
                if len(pending) >= FLUSH_SIZE:
                    await _send_to(upstream, pending)
                    pending.clear()
    except DownstreamGone:
        await plane.pool.discard(upstream)
        return Outcome(status=0, flag="DC", keep_alive=False)

    got_head = False
    status = 0
    client = downstream.codec
    out = bytearray()
    while True:
        try:
            response_event = codec.next_event()
        except ProtocolRefusal as refusal:
            if not got_head:
                raise
            raise _UpstreamBroken(refusal.reason, before_response=False) from None
        try:
            if isinstance(response_event, NeedData):
                if out:
                    await downstream.send(out)
                    out.clear()
                await _receive_from(upstream, limits, got_head=got_head)
            elif isinstance(response_event, Body):
                out += client.send_body(response_event.data)
                if len(out) >= FLUSH_SIZE:
                    await downstream.send(out)
                    out.clear()
            elif isinstance(response_event, ResponseHead):
                got_head = True
                status = response_event.status
                headers = rewrite_response_headers(response_event.headers)
                if plane.draining:
                    headers.append((b"connection", b"close"))
                response_head = ResponseHead(
                    status=status, headers=headers, reason=response_event.reason
                )
                if on_response is not None:
                    chosen = on_response(response_head)
                    if chosen is None:
                        await plane.pool.discard(upstream)
                        return Outcome(
                            status=status,
                            flag="-",
                            keep_alive=True,
                            answered=False,
                            reason="response held back for a retry",
                        )
                    response_head = chosen
                out += client.send_head(response_head)
            elif isinstance(response_event, EndOfBody):
                out += client.send_end()
                await downstream.send(out)
                await plane.pool.release(upstream)
                return Outcome(status=status, flag="-", keep_alive=True)
            else:
                raise _UpstreamBroken(
                    "connection closed by the endpoint", before_response=not got_head
                )
        except DownstreamGone:
            await plane.pool.discard(upstream)
            return Outcome(status=status, flag="DC", keep_alive=False)
