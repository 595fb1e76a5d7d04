"""HTTP/1.1 on the wire for the llhttp fast path: h11's grammar and h11's framing rules.

The fast codecs (``http1_fast``, ``http1_fast_client``) take only heads that
match h11's own line grammar (``REQUEST_BLOCK``, ``RESPONSE_BLOCK``: one regex
over the whole block), and serialise with the connection-management rules h11
applies to a response (``response_framing``), so that both paths put the
same bytes on the wire.
"""

from __future__ import annotations

import re

from meshkit.proxy.codec.messages import Headers, ResponseHead

# h11's grammar (h11/_abnf.py) for a whole head block at once, so that the fast
# path takes exactly the heads h11 accepts; llhttp is stricter still in places.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VALUE = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
_HEADER_LINES = rb"(?:\r\n" + _TOKEN + rb":[ \t]*" + _FIELD_VALUE + rb"[ \t]*)*"
REQUEST_BLOCK = re.compile(_TOKEN + rb" [\x21-\x7e]+ HTTP/1\.[01]" + _HEADER_LINES)
RESPONSE_BLOCK = re.compile(
    rb"HTTP/[0-9]\.[0-9] [2-9][0-9]{2}(?: (?:[ \t]|[^\x00\s])*)?" + _HEADER_LINES
)
NO_BODY_STATUSES = frozenset({204, 304})


def has_close_token(value: bytes) -> bool:
    return any(token.strip().lower() == b"close" for token in value.split(b","))


def serialise_head(start_line: bytes, headers: Headers) -> bytes:
    """The start line and header block; refuses a CR, LF or NUL that would split a line."""
    parts = [start_line]
    for name, value in headers:
        parts.append(name + b": " + value)
    parts.append(b"\r\n")
    block = b"\r\n".join(parts)
    lines = len(headers) + 2
    if block.count(b"\n") != lines or block.count(b"\r") != lines or b"\0" in block:
        raise ValueError("an outgoing start line or header holds CR, LF or NUL")
    return block


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def response_framing(
    head: ResponseHead, *, request_keep_alive: bool, request_is_head: bool, client_is_http11: bool
) -> tuple[Headers, bool, bool]:
    """The headers to send, whether the body is chunked, and keep-alive -- as h11 decides.

    A response without ``content-length`` (other than 204/304) is chunked for a
    1.1 client and delimited by closing the connection for a 1.0 one; a
    connection that will not be reused says ``Connection: close``.
    """
    headers = head.headers
    has_length = False
    has_transfer_encoding = False
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"content-length":
            has_length = True
        elif name == b"transfer-encoding":
            has_transfer_encoding = True
        elif name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    keep_alive = request_keep_alive and b"close" not in tokens
    chunked = False
    if head.status not in NO_BODY_STATUSES and (has_transfer_encoding or not has_length):
        headers = [
            (name, value)
            for name, value in headers
            if name != b"transfer-encoding" and name != b"content-length"
        ]
        if client_is_http11:
            headers.append((b"Transfer-Encoding", b"chunked"))
            chunked = not request_is_head
        else:
            keep_alive = False
    if not keep_alive:
        tokens.discard(b"keep-alive")
        tokens.add(b"close")
        headers = [(name, value) for name, value in headers if name != b"connection"]
        headers.append((b"Connection", b", ".join(sorted(tokens))))
    return headers, chunked, keep_alive
