"""Reading and writing a stream with fewer trips through trio's scheduler.

``trio.SocketStream`` makes every successful send or receive a checkpoint: the
task yields and waits for a scheduler pass even when the kernel took the bytes
at once, and a receive with nothing there yet costs a failing ``recv`` before
the wait.  On the hot path of a proxy that is most of the work per request.

For a plain ``trio.SocketStream`` these helpers try the non-blocking system
call first and only wait (``trio.lowlevel.wait_readable``/``wait_writable``)
when the kernel says "would block".  Trio's guarantees are kept where they
matter: a cancelled task is cancelled at every call, and a task yields at
least every ``YIELD_EVERY`` operations, so a connection whose peer never
stops sending cannot starve the others.  Any other stream goes through its
own ``receive_some``/``send_all``; TLS is ``tlsstream.TlsStream``, which drives
its socket the same way.
"""

from __future__ import annotations

import os

import trio

YIELD_EVERY = 16


class _Budget:
    """Operations done without yielding, shared by every stream of the process."""

    unyielded = 0
    # The socket written last: its answer needs a round trip, so its next read
    # waits first instead of failing once (a hint; waiting is always correct).
    sent_fd = -1


async def maybe_yield() -> None:
    """A cancellation checkpoint, and a real yield once every ``YIELD_EVERY`` calls."""
    _Budget.unyielded += 1
    if _Budget.unyielded >= YIELD_EVERY:
        _Budget.unyielded = 0
        await trio.lowlevel.checkpoint()
    else:
        await trio.lowlevel.checkpoint_if_cancelled()


def waited() -> None:
    """The task is about to block on the kernel: it yields there, so the budget starts over."""
    _Budget.unyielded = 0


async def receive_some(stream: trio.abc.Stream, max_bytes: int) -> bytes | bytearray:
    """Like ``stream.receive_some``; ``b""`` when the peer closed its side.

    Raises ``OSError`` (or trio's ``ClosedResourceError``) when the connection broke.
    """
    if type(stream) is trio.SocketStream:
        return await _receive(stream.socket, max_bytes)
    return await stream.receive_some(max_bytes)


async def send_all(stream: trio.abc.Stream, data: bytes | bytearray | memoryview) -> None:
    """Like ``stream.send_all``: every byte of ``data`` is written before it returns."""
    if type(stream) is trio.SocketStream:
        await _send(stream.socket, data)
    else:
        await stream.send_all(data)


async def _receive(sock: trio.socket.SocketType, max_bytes: int) -> bytes:
    await maybe_yield()
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("the connection was closed")
    if fd == _Budget.sent_fd:
        _Budget.sent_fd = -1
        waited()
        await trio.lowlevel.wait_readable(sock)
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the connection was closed")
    while True:
        try:
            return os.read(fd, max_bytes)
        except BlockingIOError:
            waited()
            await trio.lowlevel.wait_readable(sock)


async def _send(sock: trio.socket.SocketType, data: bytes | bytearray | memoryview) -> None:
    await maybe_yield()
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("the connection was closed")
    with memoryview(data) as whole:
        offset = 0
        while offset < len(whole):
            with whole[offset:] as rest:
                try:
                    offset += os.write(fd, rest)
                    continue
                except BlockingIOError:
                    pass
            waited()
            await trio.lowlevel.wait_writable(sock)
    _Budget.sent_fd = fd


# Lingering close (nginx's lingering_close): after a connection's last frame, FIN,
# then what the peer still sends is read and dropped for a moment, bounded in time
# and bytes, so that closing with unread bytes does not reset the connection (a
# TCP RST can destroy the last frame, a GOAWAY say, before the peer reads it).
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024


async def linger(stream: trio.abc.Stream) -> None:
    """Half-close ``stream`` and drop what still arrives, until EOF or the bounds."""
    send_eof = getattr(stream, "send_eof", None)
    if send_eof is None:
        return
    with trio.move_on_after(LINGER_SECONDS):
        try:
            await send_eof()
            dropped = 0
            while dropped < LINGER_BYTES:
                data = await stream.receive_some(64 * 1024)
                if not data:
                    return
                dropped += len(data)
        except (NotImplementedError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
