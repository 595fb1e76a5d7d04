"""A request body read ahead into memory so that it can be sent more than once.

Retries and mirroring need the request body again after it was sent.  Before
the first attempt, ``ReplayableBody.read_ahead`` reads the body into memory
up to ``MAX_RETRY_BODY_BYTES`` (64 KiB).  A body that ends within the bound is
``complete``: every ``source()`` replays it whole, as often as asked.  A larger
one is read only up to the bound; its single ``source()`` replays the part read
and then streams the rest from the client once, so it is never retried.

``RecordingSource`` keeps what one try sent, up to the same bound, so that a
try on a kept-alive connection its peer had closed can be sent again on a
fresh one: the kept bytes, then the rest from the client.

``RequestBodySource`` is what ``forward`` reads a body from: the client's
``Downstream`` itself, or a source made here.
"""

from __future__ import annotations

from typing import Protocol

from meshkit.api import MAX_RETRY_BODY_BYTES
from meshkit.proxy.codec.messages import END_OF_BODY, Body, EndOfBody, NeedData


class RequestBodySource(Protocol):
    """Where ``forward`` reads a request body from (``Downstream`` is one)."""

    def poll_body_event(self) -> Body | EndOfBody | NeedData: ...

    async def receive_body_bytes(self) -> None: ...

    async def send_continue_if_expected(self) -> None: ...


class ReplayableBody:
    """The first bytes of one request's body, kept for replay."""

    def __init__(self, *, chunks: list[bytes], complete: bool, live: RequestBodySource) -> None:
        self.chunks = chunks
        self.complete = complete
        self.size = sum(len(chunk) for chunk in chunks)
        self._live = live
        self._streamed = False

    @classmethod
    async def read_ahead(
        cls, live: RequestBodySource, *, limit: int = MAX_RETRY_BODY_BYTES
    ) -> ReplayableBody:
        """Read ``live``'s body until it ends or passes ``limit`` bytes.

        Answers ``100 Continue`` first when the client expects it.  Raises what
        ``live`` raises (the client went away, the body is over the size limit).
        """
        await live.send_continue_if_expected()
        chunks: list[bytes] = []
        size = 0
        while True:
            event = live.poll_body_event()
            if isinstance(event, EndOfBody):
                return cls(chunks=chunks, complete=True, live=live)
            if isinstance(event, NeedData):
                await live.receive_body_bytes()
                continue
            chunks.append(event.data)
            size += len(event.data)
            if size > limit:
                return cls(chunks=chunks, complete=False, live=live)

    @property
    def buffered_bytes(self) -> int | None:
        """The size of the whole body when it is held for replay, else None."""
        return self.size if self.complete else None

    @property
    def data(self) -> bytes | None:
        """The whole body when complete (for a mirror), else None."""
        return b"".join(self.chunks) if self.complete else None

    def source(self) -> RequestBodySource:
        """A fresh reading of the body; an incomplete body can be read only once."""
        if not self.complete:
            if self._streamed:
                raise RuntimeError("a request body over the replay bound can be sent only once")
            self._streamed = True
        return _ReplaySource(self.chunks, live=None if self.complete else self._live)


class RecordingSource:
    """A source that keeps the body bytes it passes on, up to ``limit``."""

    def __init__(self, live: RequestBodySource, *, limit: int = MAX_RETRY_BODY_BYTES) -> None:
        self._live = live
        self._limit = limit
        self._chunks: list[bytes] | None = []
        self._size = 0
        self._ended = False

    def poll_body_event(self) -> Body | EndOfBody | NeedData:
        event = self._live.poll_body_event()
        self._ended = isinstance(event, EndOfBody)
        if isinstance(event, Body) and self._chunks is not None:
            self._size += len(event.data)
            if self._size > self._limit:
                self._chunks = None
            else:
                self._chunks.append(event.data)
        return event

    async def receive_body_bytes(self) -> None:
        await self._live.receive_body_bytes()

    async def send_continue_if_expected(self) -> None:
        await self._live.send_continue_if_expected()

    def stop(self) -> None:
        """Keep nothing more: no replay will be asked for."""
        self._chunks = None

    def replay(self) -> RequestBodySource | None:
        """What was passed on, then the rest from the client; None past the bound.

        A body that ended is replayed whole: the client's end was read once.
        """
        if self._chunks is None:
            return None
        return _ReplaySource(self._chunks, live=None if self._ended else self._live)


class _ReplaySource:
    """The kept chunks, then (for an incomplete body) the rest from the client."""

    def __init__(self, chunks: list[bytes], *, live: RequestBodySource | None) -> None:
        self._chunks = chunks
        self._next = 0
        self._live = live

    def poll_body_event(self) -> Body | EndOfBody | NeedData:
        if self._next < len(self._chunks):
            chunk = self._chunks[self._next]
            self._next += 1
            return Body(data=chunk)
        if self._live is None:
            return END_OF_BODY
        return self._live.poll_body_event()

    async def receive_body_bytes(self) -> None:
        if self._live is not None:
            await self._live.receive_body_bytes()

    async def send_continue_if_expected(self) -> None:
        """Nothing to do: ``read_ahead`` answered ``100 Continue`` already."""
