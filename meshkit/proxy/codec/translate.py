"""HTTP/1.1 <-> HTTP/2 head and trailer translation (pure functions, RFC 9113 section 8).

The forwarding code only sees ``RequestHead`` / ``ResponseHead`` from
``meshkit.proxy.codec.messages``: an HTTP/2 request becomes a head whose ``target``
is ``:path``, whose ``Host`` carries ``:authority`` and whose ``http_version``
is ``b"2"``; ``:scheme`` travels beside it.  Going the other way the head's
request line and ``Host`` become pseudo-header fields.

Framing differs between the two protocols and is decided here too:

* an HTTP/1.1 request with neither ``Content-Length`` nor
  ``Transfer-Encoding`` has no body (RFC 9112 6.3): its HEADERS frame carries
  END_STREAM;
* an HTTP/2 message whose length is unknown (no ``content-length``, more DATA to
  come) must be sent chunked over HTTP/1.1;
* trailers cross as trailing HEADERS (HTTP/2) or chunked trailer fields
  (HTTP/1.1), stripped of connection-specific fields either way.

Inbound HTTP/2 fields are validated here (``MalformedMessage``): the HTTP/2
codec turns a refusal into a stream ``PROTOCOL_ERROR``, never a crash.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Literal

from meshkit.proxy.codec.messages import Headers, ProtocolRefusal, RequestHead, ResponseHead
from meshkit.proxy.codec.request_rules import (
    FRAMING_AND_ROUTING,
    HOST,
    check_method,
    check_origin_target,
    connection_tokens,
    normalise_target,
)

# RFC 9113 8.2.2: these describe one HTTP/1.1 connection and are malformed in HTTP/2.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
REQUEST_PSEUDO_HEADERS = frozenset({b":method", b":scheme", b":authority", b":path"})
RESPONSE_PSEUDO_HEADERS = frozenset({b":status"})
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
# The same set as a deletion table: ``name.translate(None, _TOKEN_BYTES)`` is empty
# exactly when every byte of ``name`` is a token character (one C call per field).
_TOKEN_BYTES = bytes(sorted(_TOKEN_CHARS))

BodyFraming = Literal["none", "content-length", "chunked"]


class MalformedMessage(Exception):
    """An HTTP/2 field block breaks RFC 9113 section 8; the stream must be reset."""


def connection_free(headers: Headers) -> Headers:
    """``headers`` without connection-specific fields, keeping only ``te: trailers``.

    Fields named in ``Connection`` are dropped too, as RFC 9110 7.6.1 asks of a
    proxy, except the framing and routing ones (``strip_hop_by_hop``'s rule).
    """
    listed: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            listed.update(connection_tokens(value) - FRAMING_AND_ROUTING)
    result: Headers = []
    for name, value in headers:
        if name in CONNECTION_SPECIFIC or name in listed:
            continue
        if name == b"te":
            if b"trailers" in (token.strip().lower() for token in value.split(b",")):
                result.append((b"te", b"trailers"))
            continue
        result.append((name, value))
    return result


# ---------------------------------------------------------------- HTTP/1.1 -> HTTP/2


def request_to_h2(head: RequestHead, *, scheme: bytes = b"http") -> Headers:
    """The HTTP/2 field block (pseudo-headers first) for an HTTP/1.1 request head.

    An absolute-form target (``http://catalog/items``, as an app sends to its
    ``HTTP_PROXY``) supplies ``:scheme`` and ``:authority``; otherwise
    ``:authority`` is the ``Host`` header.
    """
    target = head.target
    authority = _first(head.headers, b"host")
    if b"://" in target and not target.startswith(b"/"):
        scheme, _, rest = target.partition(b"://")
        slash = rest.find(b"/")
        authority, target = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    fields: Headers = [(b":method", head.method), (b":scheme", scheme.lower())]
    if authority:
        fields.append((b":authority", authority))
    fields.append((b":path", target or b"/"))
    fields.extend(
        (name, value)
        for name, value in _lower_names(connection_free(head.headers))
        if name != b"host"
    )
    return fields


def response_to_h2(head: ResponseHead) -> Headers:
    """The HTTP/2 field block for an HTTP/1.1 response head (the reason phrase is dropped)."""
    return [(b":status", b"%d" % head.status), *_lower_names(connection_free(head.headers))]


def trailers_to_h2(trailers: Headers) -> Headers:
    """HTTP/1.1 chunked trailer fields as an HTTP/2 trailing field block."""
    return [
        (name, value)
        for name, value in _lower_names(connection_free(trailers))
        if not name.startswith(b":") and name != b"te"
    ]


# ---------------------------------------------------------------- HTTP/2 -> HTTP/1.1


def request_from_h2(fields: Headers, *, ended: bool = False) -> tuple[RequestHead, bytes]:
    """Validate an inbound HTTP/2 request field block; return the head and ``:scheme``.

    Raises ``MalformedMessage`` for uppercase names, unknown, repeated, missing
    or misplaced pseudo-headers, connection-specific fields, ``te`` other than
    ``trailers``, values with NUL/CR/LF, and for anything that would not make
    a valid HTTP/1.1 request line and Host (``request_line_rules``); with
    ``ended`` (END_STREAM on the HEADERS frame) a non-zero ``content-length``
    is malformed too (RFC 9113 8.1.1).  Names with ``_`` are dropped, as on
    HTTP/1.1.
    """
    pseudo, regular = _split_validated(fields, REQUEST_PSEUDO_HEADERS)
    method = _required(pseudo, b":method")
    if method == b"CONNECT":
        raise MalformedMessage("CONNECT is not supported by meshkit")
    scheme = _required(pseudo, b":scheme")
    path = _required(pseudo, b":path")
    authority = pseudo.get(b":authority")
    _check_request_line(method, path, authority)
    headers: Headers = []
    if authority is not None:
        headers.append((b"host", authority))
    for name, value in regular:
        if b"_" in name:
            continue
        if name == b"host":
            _check_host(value, authority)
            if authority is None:
                headers.insert(0, (b"host", value))
            continue
        headers.append((name, value))
    _check_content_length(headers, ended=ended)
    target = normalise_target(path)
    return RequestHead(method=method, target=target, headers=headers, http_version=b"2"), scheme


def _check_request_line(method: bytes, path: bytes, authority: bytes | None) -> None:
    try:
        check_method(method)
        check_origin_target(method, path)
    except ProtocolRefusal as refusal:
        raise MalformedMessage(refusal.reason) from None
    if authority is not None and not HOST.match(authority):
        raise MalformedMessage(f":authority {authority!r} is not a valid host[:port]")


def _check_host(value: bytes, authority: bytes | None) -> None:
    if not HOST.match(value):
        raise MalformedMessage(f"host {value!r} is not a valid host[:port]")
    if authority is not None and value != authority:
        raise MalformedMessage("host and :authority name different origins")


def _check_content_length(headers: Headers, *, ended: bool) -> None:
    lengths = {value for name, value in headers if name == b"content-length"}
    if not lengths:
        return
    if len(lengths) > 1 or not all(value.isdigit() for value in lengths):
        raise MalformedMessage(f"content-length {sorted(lengths)!r} is not one number")
    if ended and int(next(iter(lengths))) != 0:
        raise MalformedMessage(
            f"content-length {next(iter(lengths)).decode()} on a request ended by its HEADERS"
        )


def response_from_h2(fields: Headers) -> ResponseHead:
    """Validate an inbound HTTP/2 response field block and return its head."""
    pseudo, regular = _split_validated(fields, RESPONSE_PSEUDO_HEADERS)
    status_text = _required(pseudo, b":status")
    if len(status_text) != 3 or not status_text.isdigit():
        raise MalformedMessage(f":status {status_text!r} is not a three-digit code")
    status = int(status_text)
    return ResponseHead(
        status=status, headers=list(regular), reason=reason_phrase(status), http_version=b"2"
    )


def trailers_from_h2(fields: Headers) -> Headers:
    """Validate an inbound HTTP/2 trailing field block; pseudo-headers are refused."""
    pseudo, regular = _split_validated(fields, frozenset())
    if pseudo:
        raise MalformedMessage("pseudo-header fields are not allowed in trailers")
    return list(regular)


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


# ---------------------------------------------------------------- helpers


def _split_validated(
    fields: Headers, allowed_pseudo: frozenset[bytes]
) -> tuple[dict[bytes, bytes], Headers]:
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    for name, value in fields:
        if not name:
            raise MalformedMessage("empty field name")
        if name.startswith(b":"):
            if regular:
                raise MalformedMessage(f"pseudo-header {name!r} after a regular field")
            if name not in allowed_pseudo:
                raise MalformedMessage(f"unknown pseudo-header {name!r}")
            if name in pseudo:
                raise MalformedMessage(f"repeated pseudo-header {name!r}")
            _check_value(name, value)
            pseudo[name] = value
            continue
        if name.translate(None, _TOKEN_BYTES):
            raise MalformedMessage(f"field name {name!r} is not a lower-case token")
        if name in CONNECTION_SPECIFIC:
            raise MalformedMessage(f"connection-specific field {name!r} in HTTP/2")
        if name == b"te" and value.strip().lower() != b"trailers":
            raise MalformedMessage(f"te: {value!r}; only 'trailers' is allowed in HTTP/2")
        _check_value(name, value)
        regular.append((name, value))
    return pseudo, regular


def _check_value(name: bytes, value: bytes) -> None:
    if b"\x00" in value or b"\r" in value or b"\n" in value:
        raise MalformedMessage(f"field {name!r} has a value with NUL, CR or LF")
    if value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
        raise MalformedMessage(f"field {name!r} has a value with surrounding whitespace")


def _required(pseudo: dict[bytes, bytes], name: bytes) -> bytes:
    value = pseudo.get(name)
    if not value:
        raise MalformedMessage(f"missing or empty {name.decode()} pseudo-header")
    return value


def _first(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _lower_names(headers: Headers) -> Headers:
    return [(name.lower(), value) for name, value in headers]
