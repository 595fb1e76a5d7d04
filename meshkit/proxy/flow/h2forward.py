"""One attempt over a multiplexed HTTP/2 connection, for an HTTP/1.1 or HTTP/2 client.

``forward`` hands an attempt here when the destination speaks HTTP/2: an app
declared ``http2``/``grpc``, or another sidecar (ALPN ``h2``, one multiplexed
connection per endpoint) for an HTTP/2 client, for an HTTP/1.1 client that
accepts trailers, or for any client when the sidecar hop is set to ``h2``.

Full duplex: the request body is pumped in its own task while the response
streams back, each side moving only as fast as the other end's window (or
socket) allows, so nothing is held beyond one window per direction.
Trailers cross in both directions between HTTP/2 peers (gRPC status).  An
HTTP/1.1 client gets the response's trailers only when it sent ``te: trailers``
and the response is chunked (``Http1Downstream.end_response``): such a request
travels over HTTP/2 between sidecars, the one hop protocol here that carries
trailers.

Which protocol carries an HTTP/1.1 client's request between sidecars is read
once from ``MESHKIT_SIDECAR_PROTOCOL`` (``http1``, the default: pooled
HTTP/1.1; ``h2``: one multiplexed HTTP/2 connection per endpoint), kept for
measuring one against the other (benchmarks/hop.py ``--sidecar-protocol``).

Failures map across hops: a refused stream (REFUSED_STREAM, or GOAWAY naming
an older stream) is retried once on a fresh connection; any other reset
before the response head is ``502 UC`` (left to the caller with
``answer_failures=False``); a reset after it resets the client's stream (or
closes the client's HTTP/1.1 connection).  A new connection to an instance of
a service takes a ticket from that service's circuit breaker; when none is
admitted the answer is ``503 UO``.
"""

from __future__ import annotations

import os
from typing import Literal

import trio
from h2.errors import ErrorCodes

from meshkit.proxy.codec.headers import rewrite_response_headers
from meshkit.proxy.codec.messages import (
    EndOfBody,
    NeedData,
    ProtocolRefusal,
    RequestHead,
    ResponseHead,
)
from meshkit.proxy.config import AppTarget, Endpoint, Limits
from meshkit.proxy.flow.attempt import Attempt, Outcome, held_back
from meshkit.proxy.flow.exchange import BodyEvent, Downstream, DownstreamGone, accepts_trailers
from meshkit.proxy.flow.h2downstream import H2Downstream
from meshkit.proxy.net.h2conn import Http2Stream, StreamError
from meshkit.proxy.net.transport import ConnectFailure
from meshkit.proxy.policy.breaker import ConnectionLimitReached

SidecarProtocol = Literal["http1", "h2"]


def sidecar_protocol_from(environ: dict[str, str] | os._Environ[str]) -> SidecarProtocol:
    """``MESHKIT_SIDECAR_PROTOCOL`` as a protocol name (``http1`` when unset or unknown)."""
    return "h2" if environ.get("MESHKIT_SIDECAR_PROTOCOL", "").lower() == "h2" else "http1"


SIDECAR_PROTOCOL: SidecarProtocol = sidecar_protocol_from(os.environ)


class _Failed(Exception):
    """The stream failed before its response head."""

    def __init__(self, reason: str, *, refused: bool = False, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused
        self.timed_out = timed_out


class _ResponseBroken(Exception):
    """The stream failed after its response head was sent on."""

    def __init__(self, status: int, error_code: int) -> None:
        super().__init__(status)
        self.status = status
        self.error_code = error_code


def speaks_http2(
    downstream: object,
    destination: Endpoint | AppTarget,
    *,
    head: RequestHead,
    sidecar_protocol: SidecarProtocol = SIDECAR_PROTOCOL,
) -> bool:
    """Whether this exchange goes upstream over HTTP/2 (``forward_http2``).

    An app: when it speaks ``http2``.  Another sidecar: for an HTTP/2 client,
    when that hop is HTTP/2, or when the client accepts trailers.
    """
    if isinstance(destination, AppTarget):
        return destination.protocol == "http2"
    return (
        isinstance(downstream, H2Downstream)
        or sidecar_protocol == "h2"
        or accepts_trailers(head.headers)
    )


async def forward_http2(attempt: Attempt) -> Outcome:
    """Send ``attempt``'s request on an HTTP/2 stream and relay the response."""
    upstream_head = attempt.upstream_head(chunked=False, http_version=b"2")
    if accepts_trailers(attempt.head.headers):
        # gRPC needs ``te: trailers`` end to end; it is the one hop-by-hop value HTTP/2 keeps.
        upstream_head.headers.append((b"te", b"trailers"))
    first = attempt.source.poll_body_event()
    for try_number in (1, 2):
        try:
            stream = await _open(attempt, upstream_head, first)
        except (ConnectionLimitReached, ConnectFailure) as error:
            return await attempt.not_connected(error)
        except StreamError as error:
            if try_number == 1:
                continue
            return await attempt.fail("UC", 502, f"{attempt.what}: {error}")
        try:
            return await _exchange(attempt, stream, first)
        except _Failed as failed:
            if failed.refused and try_number == 1 and isinstance(first, EndOfBody):
                continue  # the peer never processed it and there was no body to lose
            status, flag = (504, "UT") if failed.timed_out else (502, "UC")
            return await attempt.fail(flag, status, f"{attempt.what} {failed.reason}")
        finally:
            if stream.unfinished:
                stream.reset(ErrorCodes.CANCEL)  # cancelled (the client reset its stream)
            attempt.plane.h2_upstreams.stream_finished()
    raise AssertionError("unreachable: the second try always returns")


async def _open(attempt: Attempt, head: RequestHead, first: BodyEvent) -> Http2Stream:
    """A stream carrying ``head`` (with END_STREAM when the body already ended)."""

    async def connect() -> trio.abc.Stream:
        return await attempt.connect(alpn="h2")

    stream, _reused = await attempt.plane.h2_upstreams.open_stream(
        attempt.key,
        head,
        connect=connect,
        end_stream=isinstance(first, EndOfBody),
        open_ticket=attempt.open_ticket,
    )
    return stream


async def _exchange(attempt: Attempt, stream: Http2Stream, first: BodyEvent) -> Outcome:
    """The request body pumped upstream while the response streams back."""
    try:
        refusals: list[ProtocolRefusal] = []
        status, answered = await _relay_while_pumping(attempt, stream, first, refusals)
        if refusals:
            stream.reset(ErrorCodes.CANCEL)
            return await attempt.refused(refusals[0])
    except _ResponseBroken as broken:
        stream.reset(ErrorCodes.CANCEL)
        attempt.downstream.abort_response(broken.error_code)
        return Outcome(status=broken.status, flag="UC", keep_alive=False)
    except DownstreamGone:
        stream.reset(ErrorCodes.CANCEL)
        return Outcome(status=0, flag="DC", keep_alive=False)
    if not answered:
        stream.reset(ErrorCodes.CANCEL)
        return held_back(status)
    return Outcome(status=status, flag="-", keep_alive=not attempt.plane.draining)


async def _relay_while_pumping(
    attempt: Attempt, stream: Http2Stream, first: BodyEvent, refusals: list[ProtocolRefusal]
) -> tuple[int, bool]:
    """``_relay_response`` with the request body pumped beside it (in a task, if any)."""
    if isinstance(first, EndOfBody):
        # END_STREAM went with the head: nothing to pump, no task, no nursery.
        return await _relay_response(attempt, stream)
    # Errors leave the nursery as themselves, not wrapped in an ExceptionGroup.
    relay_error: Exception | None = None
    result = (0, False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump_request, stream, first, attempt, refusals, nursery.cancel_scope)
        try:
            result = await _relay_response(attempt, stream)
        except (_Failed, _ResponseBroken, DownstreamGone) as error:
            relay_error = error
        finally:
            nursery.cancel_scope.cancel()
    if relay_error is not None:
        raise relay_error
    return result


async def _pump_request(
    stream: Http2Stream,
    first: BodyEvent,
    attempt: Attempt,
    refusals: list[ProtocolRefusal],
    exchange: trio.CancelScope,
) -> None:
    """Send the request body (and trailers) upstream as the upstream's window allows.

    A body refused (413, or 408 when it stalls) ends the exchange: ``refusals``
    says why, for the caller to answer.
    """
    source, downstream = attempt.source, attempt.downstream
    event: BodyEvent = first
    try:
        await source.send_continue_if_expected()
        while not isinstance(event, EndOfBody):
            if isinstance(event, NeedData):
                await source.receive_body_bytes()
            else:
                await stream.send_body(event.data)
            event = source.poll_body_event()
        trailers = downstream.request_trailers
        if trailers:
            await stream.send_trailers(trailers)
        else:
            await stream.end()
    except DownstreamGone:
        stream.reset(ErrorCodes.CANCEL)
        downstream.abort_response(ErrorCodes.CANCEL)
    except ProtocolRefusal as refusal:
        refusals.append(refusal)
        exchange.cancel()
    except StreamError:
        return


async def _receive_head(stream: Http2Stream, limits: Limits) -> ResponseHead:
    with trio.move_on_after(limits.idle_timeout) as waiting:
        try:
            response = await stream.receive_response()
        except StreamError as error:
            refused = error.error_code == ErrorCodes.REFUSED_STREAM
            raise _Failed(f"reset the stream: {error.reason or error}", refused=refused) from None
    if waiting.cancelled_caught:
        raise _Failed(f"sent nothing for {limits.idle_timeout:g}s", timed_out=True)
    return response


async def _relay_response(attempt: Attempt, stream: Http2Stream) -> tuple[int, bool]:
    """Stream the response to the client: (status, whether it was sent)."""
    response = await _receive_head(stream, attempt.limits)
    head = attempt.commit(
        ResponseHead(
            status=response.status,
            headers=rewrite_response_headers(response.headers),
            reason=response.reason,
        )
    )
    if head is None:
        return response.status, False
    downstream = attempt.downstream
    if stream.peer_ended and stream.trailers is None:
        # The whole response is here (the common small one): one write downstream.
        body = b"".join([chunk async for chunk in stream.receive_body()])
        if body:
            await downstream.send_whole_response(head, body)
        else:
            await downstream.send_response_head(head, end_stream=True)
        return response.status, True
    await downstream.send_response_head(head)
    await _relay_body(stream, downstream, attempt.limits, response.status)
    return response.status, True


async def _relay_body(
    stream: Http2Stream, downstream: Downstream, limits: Limits, status: int
) -> None:
    while True:
        with trio.move_on_after(limits.idle_timeout) as waiting:
            try:
                chunk = await stream.receive_chunk()
            except StreamError as error:
                raise _ResponseBroken(status, error.error_code) from None
        if waiting.cancelled_caught:
            raise _ResponseBroken(status, ErrorCodes.CANCEL)
        if not chunk:
            break
        await downstream.send_response_body(chunk)
    await downstream.end_response(stream.trailers or None)
