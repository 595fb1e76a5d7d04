"""TLS over a connection's own socket: ``ssl.SSLObject`` between two memory BIOs.

``trio.SSLStream`` drives TLS through a transport stream: every record costs a
``SocketStream`` call (a checkpoint, a failing ``recv`` before each wait) and
a pass through its retry loop.  ``TlsStream`` calls the non-blocking socket
itself and waits on trio only when the kernel says "would block", with the
yield budget of ``streamio`` so a busy connection cannot starve the others,
and a cancellation checkpoint at every call.  A receive decrypts every whole
record already read (up to ``max_bytes``); a send encrypts the data and writes
all its records in one system call.

Semantics are ``SSLStream``'s with ``https_compatible=True``: EOF without
close_notify is EOF after the handshake (an error during it), ``aclose`` sends
close_notify without waiting for the peer's; a broken connection raises
``trio.BrokenResourceError`` whose ``__cause__`` is the ``ssl.SSLError`` or
``OSError``.  A send cancelled half-way breaks the stream (the rest of a
record cannot be taken back).  ``send_eof`` sends close_notify and FIN on TLS
1.3, where the other direction stays open (RFC 8446 6.1).
"""

from __future__ import annotations

import os
import ssl

import trio

from meshkit.proxy.net.streamio import maybe_yield, waited

READ_SIZE = 65536
RECEIVE_SIZE = 65536


class TlsStream(trio.abc.HalfCloseableStream):
    """TLS on ``transport_stream``'s socket; call ``do_handshake`` before use."""

    def __init__(
        self,
        transport_stream: trio.SocketStream,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
    ) -> None:
        self.transport_stream = transport_stream
        self._socket = transport_stream.socket
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side)
        self._handshaken = False
        self._closed = False
        self._broken: BaseException | None = None
        self._eof = False  # the peer's close_notify (or FIN) has been read
        self._sent_eof = False
        self._receiving = False
        self._sending = False
        # After a send the answer is never there yet: wait first, skip the failing read.
        self._answer_due = False
        self._unsent = b""  # ciphertext the kernel has not taken yet
        self._flushing = False

    # -- what the code uses of SSLStream --------------------------------------

    def getpeercert(self, binary_form: bool = False) -> object:
        return self._ssl.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        return self._ssl.selected_alpn_protocol()

    def version(self) -> str | None:
        return self._ssl.version()

    async def do_handshake(self) -> None:
        """The TLS handshake; ``trio.BrokenResourceError`` when it fails."""
        self._check()
        if self._handshaken:
            await trio.lowlevel.checkpoint()
            return
        while True:
            try:
                self._ssl.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as error:
                self._send_alert()
                raise self._break(error) from error
            await self._flush()
            if done:
                self._handshaken = True
                return
            if not await self._fill():
                self._incoming.write_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Plaintext, at most ``max_bytes``; ``b""`` at the peer's close_notify or EOF."""
        self._check()
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            await self._turn()
            return await self._receive(RECEIVE_SIZE if max_bytes is None else max_bytes)
        finally:
            self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check()
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._sent_eof:
            raise trio.ClosedResourceError("this stream was half-closed with send_eof")
        self._sending = True
        try:
            await self._turn()
            if data:
                try:
                    self._ssl.write(data)
                except ssl.SSLError as error:
                    raise self._break(error) from error
                await self._flush()
                self._answer_due = True
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        self._check()
        await trio.lowlevel.wait_writable(self._socket)

    async def send_eof(self) -> None:
        """close_notify then FIN; ``NotImplementedError`` before TLS 1.3 (no half-close)."""
        self._check()
        if self._ssl.version() != "TLSv1.3":
            raise NotImplementedError("TLS before 1.3 cannot half-close")
        if self._sent_eof:
            await trio.lowlevel.checkpoint()
            return
        self._sent_eof = True
        self._queue_close_notify()
        await self._flush()
        try:
            self._socket.shutdown(trio.socket.SHUT_WR)
        except OSError as error:
            raise self._break(error) from error

    async def aclose(self) -> None:
        """close_notify if it can go at once (never waits for the peer), then close."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        if self._handshaken and self._broken is None and not self._sent_eof:
            self._sent_eof = True
            self._queue_close_notify()
            self._write_now()
        self._closed = True
        await self.transport_stream.aclose()

    def peer_has_spoken(self) -> bool:
        """Whether bytes or EOF from the peer are already known here (no system call)."""
        return self._eof or self._broken is not None or bool(self._incoming.pending)

    # -- the loop ---------------------------------------------------------------

    async def _turn(self) -> None:
        """The checkpoint (and now and then the yield) every call makes; the handshake if due."""
        await maybe_yield()
        if not self._handshaken:
            await self.do_handshake()

    async def _receive(self, max_bytes: int) -> bytes | bytearray:
        while True:
            if self._eof:
                return b""
            data = self._decrypt(max_bytes)
            if data is not None:
                return data
            if not await self._fill():
                self._eof = True
                if not self._handshaken:
                    raise trio.BrokenResourceError("the peer closed during the handshake")

    def _decrypt(self, max_bytes: int) -> bytes | None:
        """Every plaintext byte decryptable now, up to ``max_bytes``; None: read more."""
        chunks: list[bytes] = []
        size = 0
        while size < max_bytes:
            try:
                chunk = self._ssl.read(max_bytes - size)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLError as error:
                raise self._break(error) from error
            if not chunk:
                self._eof = True
                break
            chunks.append(chunk)
            size += len(chunk)
            if not self._incoming.pending and not self._ssl.pending():
                break
        if self._outgoing.pending:
            self._write_now()  # a KeyUpdate's answer, say: best effort, never waits
        if chunks:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return b"" if self._eof else None

    async def _fill(self) -> bool:
        """Ciphertext from the socket into the incoming BIO; False at EOF."""
        if self._answer_due:
            self._answer_due = False
            await self._wait_readable()
        while True:
            fd = self._fd()
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await self._wait_readable()
                continue
            except OSError as error:
                raise self._break(error) from error
            if not data:
                return False
            self._incoming.write(data)
            return True

    async def _wait_readable(self) -> None:
        waited()
        await trio.lowlevel.wait_readable(self._socket)
        self._check()

    async def _flush(self) -> None:
        """Write every pending record, waiting while the kernel's buffer is full."""
        self._flushing = True
        try:
            while self._unsent or self._outgoing.pending:
                data = self._unsent + self._outgoing.read()
                self._unsent = b""
                await self._write_all(data)
        finally:
            self._flushing = False

    async def _write_all(self, data: bytes) -> None:
        with memoryview(data) as whole:
            offset = 0
            while offset < len(whole):
                fd = self._fd()
                try:
                    offset += os.write(fd, whole[offset:])
                    continue
                except BlockingIOError:
                    pass
                except OSError as error:
                    raise self._break(error) from error
                waited()
                try:
                    await trio.lowlevel.wait_writable(self._socket)
                except BaseException as error:
                    self._break(error)
                    raise
                self._check()

    def _write_now(self) -> None:
        """What is pending, if the kernel takes it at once; else kept for the next flush."""
        data = self._unsent + self._outgoing.read()
        self._unsent = data
        if not data or self._closed or self._flushing:
            return
        try:
            written = os.write(self._fd(), data)
        except (BlockingIOError, trio.ClosedResourceError):
            return
        except OSError:
            self._unsent = b""
            return
        self._unsent = data[written:]

    def _queue_close_notify(self) -> None:
        try:
            self._ssl.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLError:
            pass

    def _send_alert(self) -> None:
        """A failed handshake's alert tells the peer why; best effort."""
        if self._outgoing.pending:
            self._write_now()

    def _fd(self) -> int:
        fd = self._socket.fileno()
        if fd < 0 or self._closed:
            raise trio.ClosedResourceError("the connection was closed")
        return fd

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the connection was closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("the connection broke earlier") from self._broken

    def _break(self, error: BaseException) -> trio.BrokenResourceError:
        if self._broken is None:
            self._broken = error
        return trio.BrokenResourceError(str(error))
