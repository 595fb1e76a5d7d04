"""One attempt over a pooled HTTP/1.1 connection, for an HTTP/1.1 or HTTP/2 client.

The head and the body received so far leave in one write; a request whose
body is all here (most) then simply relays the response, with no extra task.
One whose body is still coming goes full duplex (``_full_duplex``): a task
pumps the rest of the body up while the response streams back, so an endpoint
that answers before reading the whole body (an early 413, an echo that
streams) works whatever the body's size, and nothing is buffered beyond one
received chunk either way.  A body of unknown length (an HTTP/2 client's)
goes chunked; request trailers are dropped, and an HTTP/1.1 endpoint sends
no response trailers here.

Failures are answered, never dropped: a connect failure is ``503 UF``, an
endpoint that breaks before its response head is ``502 UC``, one that is
silent for ``idle_timeout`` is ``504 UT``.  A kept-alive connection that turns
out to be closed by its peer before any answer is retried once, at once, on a
fresh one, with the body bytes the first try sent (kept up to the replay
bound by ``replay.RecordingSource``) and then the rest from the client.  A new connection to an
endpoint takes a ticket from its service's circuit breaker (``max_connections``,
held until the connection closes); when none is admitted the request is
answered ``503 UO`` at once, without connecting.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from meshkit.proxy.codec.headers import is_chunked, rewrite_response_headers
from meshkit.proxy.codec.messages import (
    NEED_DATA,
    Body,
    EndOfBody,
    NeedData,
    ProtocolRefusal,
    RequestHead,
    ResponseEvent,
    ResponseHead,
)
from meshkit.proxy.config import Limits
from meshkit.proxy.flow.attempt import Attempt, Outcome, held_back
from meshkit.proxy.flow.exchange import BodyEvent, Downstream, DownstreamGone
from meshkit.proxy.flow.replay import RecordingSource, RequestBodySource
from meshkit.proxy.net.pool import UpstreamConnection
from meshkit.proxy.net.streamio import receive_some, send_all
from meshkit.proxy.net.transport import ConnectFailure
from meshkit.proxy.policy.breaker import ConnectionLimitReached

FLUSH_SIZE = 64 * 1024
RECEIVE_SIZE = 65536


class _UpstreamBroken(Exception):
    """The endpoint's connection failed; ``before_response`` says if nothing came back."""

    def __init__(self, reason: str, *, before_response: bool, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.before_response = before_response
        self.timed_out = timed_out


async def forward_http1(attempt: Attempt) -> Outcome:
    """Send ``attempt``'s request on a pooled HTTP/1.1 connection and relay the response."""
    recording = RecordingSource(attempt.source)
    source: RequestBodySource = recording
    first = source.poll_body_event()
    has_length = any(name == b"content-length" for name, _ in attempt.head.headers)
    chunked = is_chunked(attempt.head.headers) or (
        not isinstance(first, EndOfBody) and not has_length
    )
    upstream_head = attempt.upstream_head(chunked=chunked, http_version=b"1.1")
    pool = attempt.plane.pool
    for try_number in (1, 2):
        try:
            upstream = await pool.acquire(
                attempt.key,
                limits=attempt.limits,
                connect=attempt.connect,
                open_ticket=attempt.open_ticket,
            )
        except (ConnectionLimitReached, ConnectFailure) as error:
            return await attempt.not_connected(error)
        if not upstream.reused or try_number == 2:
            recording.stop()
        try:
            sent = await _send_request(upstream, upstream_head, first, source)
            if isinstance(sent, EndOfBody):
                return await _relay_response(attempt, upstream)
            return await _full_duplex(attempt, upstream, source)
        except DownstreamGone:
            await pool.discard(upstream)
            return Outcome(status=0, flag="DC", keep_alive=False)
        except _UpstreamBroken as broken:
            await pool.discard(upstream)
            replay = recording.replay() if broken.before_response else None
            if replay is None:
                return await _answer_broken(attempt, broken)
            # A kept-alive connection its peer had closed: once more on a fresh one.
            source = replay
            first = source.poll_body_event()
        except ProtocolRefusal as refusal:
            await pool.discard(upstream)
            return await attempt.refused(refusal)
        except BaseException:
            await pool.discard(upstream)
            raise
    raise AssertionError("unreachable: the second try always returns")


async def _answer_broken(attempt: Attempt, broken: _UpstreamBroken) -> Outcome:
    if not broken.before_response:
        attempt.downstream.abort_response()
        return Outcome(status=0, flag="UC", keep_alive=False)
    status, flag = (504, "UT") if broken.timed_out else (502, "UC")
    return await attempt.fail(flag, status, f"{attempt.what} {broken.reason}")


async def _send_request(
    upstream: UpstreamConnection, head: RequestHead, first: BodyEvent, source: RequestBodySource
) -> BodyEvent:
    """The head and the body received so far, in one write: ``EndOfBody`` when that was
    all of it, ``NeedData`` when more is to come (``_full_duplex``)."""
    pending = bytearray(upstream.codec.send_head(head))
    await source.send_continue_if_expected()
    event = _encode_available(upstream, first, source, pending)
    await _send_to(upstream, pending)
    return event


def _encode_available(
    upstream: UpstreamConnection, event: BodyEvent, source: RequestBodySource, out: bytearray
) -> BodyEvent:
    """Add the body bytes already received (and the end, if it came) to ``out``."""
    codec = upstream.codec
    while isinstance(event, Body):
        out += codec.send_body(event.data)
        event = source.poll_body_event()
    if isinstance(event, EndOfBody):
        out += codec.send_end()
    return event


class _Pump:
    """The rest of a request body, sent as it comes while the response is relayed."""

    def __init__(self, upstream: UpstreamConnection, source: RequestBodySource) -> None:
        self.upstream = upstream
        self.source = source
        self.sending = True
        self.failure: DownstreamGone | ProtocolRefusal | None = None

    async def run(self, exchange: trio.CancelScope, limits: Limits) -> None:
        try:
            event: BodyEvent = NEED_DATA
            while not isinstance(event, EndOfBody):
                await self.source.receive_body_bytes()
                pending = bytearray()
                event = _encode_available(
                    self.upstream, self.source.poll_body_event(), self.source, pending
                )
                with trio.move_on_after(limits.idle_timeout) as blocked:
                    await _send_to(self.upstream, pending)
                if blocked.cancelled_caught:
                    return  # the endpoint stopped reading: its response (or silence) tells
        except _UpstreamBroken:
            return  # the endpoint closed: its response, if any, is still to be read
        except (DownstreamGone, ProtocolRefusal) as failure:
            self.failure = failure
            exchange.cancel()
        finally:
            self.sending = False


async def _full_duplex(
    attempt: Attempt, upstream: UpstreamConnection, source: RequestBodySource
) -> Outcome:
    """Full duplex: the body streams upstream while the response comes back, so an
    endpoint may answer (even finish) before it has read the whole body.  Such an
    early answer ends the exchange; neither connection is reused after it."""
    pump = _Pump(upstream, source)
    outcome: Outcome | None = None
    # Errors leave the nursery as themselves, not wrapped in an ExceptionGroup.
    relay_error: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run, nursery.cancel_scope, attempt.limits)
        try:
            outcome = await _relay_response(attempt, upstream, sending=lambda: pump.sending)
        except Exception as error:
            relay_error = error
        finally:
            nursery.cancel_scope.cancel()
    if pump.failure is not None:
        raise pump.failure
    if relay_error is not None:
        raise relay_error
    assert outcome is not None
    return outcome


class _HeldResponse:
    """The response head and body bytes, held while the codec has more to say.

    A small response thus leaves as one write, a large one in writes of up to
    ``FLUSH_SIZE``; what is held goes out before any wait for the endpoint, so
    a streamed response is never held back.
    """

    def __init__(self, downstream: Downstream) -> None:
        self.downstream = downstream
        self.head: ResponseHead | None = None
        self.body = b""

    async def flush(self) -> None:
        if self.head is not None:
            await self.downstream.send_response_head(self.head)
            self.head = None
        if self.body:
            await self.downstream.send_response_body(self.body)
            self.body = b""

    async def add_body(self, data: bytes) -> None:
        self.body += data
        if len(self.body) >= FLUSH_SIZE:
            await self.flush()

    async def end(self) -> None:
        downstream = self.downstream
        if self.head is not None and self.body:
            await downstream.send_whole_response(self.head, self.body)
        elif self.head is not None:
            await downstream.send_response_head(self.head, end_stream=True)
        elif self.body:
            await downstream.send_response_body(self.body, end_stream=True)
        else:
            await downstream.end_response()


async def _relay_response(
    attempt: Attempt, upstream: UpstreamConnection, *, sending: Callable[[], bool] = lambda: False
) -> Outcome:
    """Stream the response to the client; releases ``upstream`` to the pool when done.

    While ``sending()`` (the request body still streams up) the endpoint's
    silence is no timeout.
    """
    held = _HeldResponse(attempt.downstream)
    status = 0
    try:
        while True:
            event = _next_response_event(upstream, got_head=status != 0)
            if isinstance(event, NeedData):
                await held.flush()
                await _receive_from(upstream, attempt.limits, got_head=status != 0, sending=sending)
            elif isinstance(event, ResponseHead):
                status = event.status
                head = attempt.commit(
                    ResponseHead(
                        status=status,
                        headers=rewrite_response_headers(event.headers),
                        reason=event.reason,
                    )
                )
                if head is None:
                    await attempt.plane.pool.discard(upstream)
                    return held_back(status)
                held.head = head
            elif isinstance(event, Body):
                await held.add_body(event.data)
            elif isinstance(event, EndOfBody):
                await held.end()
                await attempt.plane.pool.release(upstream)
                return Outcome(status=status, flag="-", keep_alive=True)
            else:
                raise _UpstreamBroken(
                    "connection closed by the endpoint", before_response=status == 0
                )
    except DownstreamGone:
        await attempt.plane.pool.discard(upstream)
        return Outcome(status=status, flag="DC", keep_alive=False)


def _next_response_event(upstream: UpstreamConnection, *, got_head: bool) -> ResponseEvent:
    try:
        return upstream.codec.next_event()
    except ProtocolRefusal as refusal:
        if not got_head:
            raise
        raise _UpstreamBroken(refusal.reason, before_response=False) from None


async def _receive_from(
    upstream: UpstreamConnection,
    limits: Limits,
    *,
    got_head: bool,
    sending: Callable[[], bool] = lambda: False,
) -> None:
    timed_out = False
    while True:
        deadline = trio.current_time() + limits.idle_timeout
        if deadline >= trio.current_effective_deadline():
            # An enclosing deadline (the route's timeout) cuts this wait before the idle
            # timeout could: the idle timeout needs no cancel scope of its own.
            data = await _receive_upstream(upstream, got_head=got_head)
            break
        with trio.CancelScope(deadline=deadline) as scope:
            data = await _receive_upstream(upstream, got_head=got_head)
        timed_out = scope.cancelled_caught
        if not (timed_out and sending()):
            break
    if timed_out:
        raise _UpstreamBroken(
            f"sent nothing for {limits.idle_timeout:g}s",
            before_response=not got_head,
            timed_out=True,
        )
    if not data and not got_head:
        raise _UpstreamBroken("closed the connection before responding", before_response=True)
    upstream.codec.receive_data(data)


async def _receive_upstream(upstream: UpstreamConnection, *, got_head: bool) -> bytes | bytearray:
    try:
        return await receive_some(upstream.stream, RECEIVE_SIZE)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
        raise _UpstreamBroken(f"connection lost: {error}", before_response=not got_head) from None


async def _send_to(upstream: UpstreamConnection, data: bytes | bytearray) -> None:
    try:
        await send_all(upstream.stream, data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
        raise _UpstreamBroken(f"connection lost: {error}", before_response=True) from None
