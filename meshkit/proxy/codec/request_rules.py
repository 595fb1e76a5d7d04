"""The rules of HARDENING.md that every HTTP/1.1 request head must pass (pure functions).

Both HTTP/1.1 codecs apply exactly these functions -- the h11 reference path
to the raw block (``check_request_head``), the llhttp fast path to the fields
llhttp parsed (``check_head_size`` and ``check_request_fields``) -- so the two
answer every head the same way.

Framing and routing headers (``FRAMING_AND_ROUTING``) decide where a request
ends and where it goes; a ``Connection`` list that names one of them would
make a hop delete it while the bytes it framed still travel, so such a
request is refused (400) rather than forwarded (``strip_hop_by_hop`` in
``headers`` never removes them either).
"""

from __future__ import annotations

import re

from meshkit.proxy.codec.messages import Headers, ProtocolRefusal
from meshkit.proxy.config import Limits

LINE_SPLIT = re.compile(rb"\r?\n")
# host = reg-name / IPv4 / [IPv6], optional :port (RFC 3986, without userinfo)
HOST = re.compile(rb"^(?:[A-Za-z0-9\-._~%!$&'()*+,;=]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")

# RFC 9110 5.6.2 tchar, as a deletion table: ``value.translate(None, TOKEN_CHARS)``
# is empty exactly when every byte of ``value`` is a token character.
TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# An origin-form target (RFC 9112 3.2.1): "/" then visible ASCII, no fragment.
ORIGIN_FORM = re.compile(rb"/[\x21\x22\x24-\x7e]*")
# An absolute-form one (3.2.2), as an app sends to its HTTP_PROXY: no userinfo.
ABSOLUTE_FORM = re.compile(
    rb"(?i:https?)://[^/?#@\x00-\x20\x7f-\xff]+(?:[/?][\x21\x22\x24-\x7e]*)?"
)

# The fields a sidecar adds to a request on its way (``headers.rewrite_request_headers``).
MESH_ADDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-request-id",
        b"x-forwarded-client-cert",
        b"traceparent",
    }
)
# Bytes of those fields that do not count against ``max_header_bytes`` (a hop
# adds a few hundred): a head the client kept within the limit stays within it.
MESH_HEADER_ALLOWANCE = 8 * 1024

FRAMING_AND_ROUTING = frozenset({b"content-length", b"transfer-encoding", b"host", b"te"})


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-case names a ``Connection`` field value lists."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def speaks_http1(first_bytes: bytes) -> bool:
    """False once the first request line is complete and names no ``HTTP/`` version.

    Such a peer (h2spec's invalid preface, a TLS client hello on a plaintext
    port) speaks no HTTP/1.x, and an HTTP/1.1 answer would be noise to it:
    the listener closes the connection instead.  An incomplete line is given
    the benefit of the doubt.
    """
    line, newline, _ = first_bytes.lstrip(b"\r\n").partition(b"\n")
    if not newline:
        return True
    return line.rstrip(b"\r").rpartition(b" ")[2].startswith(b"HTTP/")


def check_method(method: bytes) -> None:
    """400 unless ``method`` is a token (RFC 9110 9.1)."""
    if not method or method.translate(None, TOKEN_CHARS):
        raise ProtocolRefusal(400, f"malformed request: method {method!r} is not a token")


def check_origin_target(method: bytes, target: bytes) -> None:
    """400 unless ``target`` is origin form, or ``*`` for OPTIONS (what a hop forwards)."""
    if target == b"*" and method == b"OPTIONS":
        return
    if ORIGIN_FORM.fullmatch(target) is None:
        raise ProtocolRefusal(
            400, f"malformed request: target {target[:64]!r} is not an absolute path"
        )


def check_request_target(method: bytes, target: bytes) -> None:
    """400 for a target no listener serves: origin or absolute form, ``*`` for OPTIONS.

    (CONNECT's authority form is left to the router, which refuses it.)
    """
    if method == b"CONNECT" or ABSOLUTE_FORM.fullmatch(target) is not None:
        return
    check_origin_target(method, target)


def normalise_target(target: bytes) -> bytes:
    """``target`` with the dot segments of its path removed (RFC 3986 5.2.4).

    As Istio's default path normalisation: ``/x/../raw/y`` is routed, and
    reaches the app, as ``/raw/y``; the query is left alone.
    """
    if b"/." not in target:
        return target
    start = target.find(b"://")
    start = 0 if start < 0 or target.startswith(b"/") else target.find(b"/", start + 3)
    if start < 0:
        return target
    end = len(target)
    for mark in (b"?", b"#"):
        found = target.find(mark, start)
        if found >= 0:
            end = min(end, found)
    return target[:start] + remove_dot_segments(target[start:end]) + target[end:]


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 5.2.4 on an absolute path (one that starts with ``/``)."""
    output: list[bytes] = []
    segments = path.split(b"/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == b"..":
            if output:
                output.pop()
            if last:
                output.append(b"")
        elif segment == b".":
            if last:
                output.append(b"")
        else:
            output.append(segment)
    return b"/" + b"/".join(output)


def check_request_head(raw: bytes, limits: Limits) -> tuple[int | None, bool]:
    """Refuse what h11 would accept but a proxy must not (raw header block checks).

    ``raw`` is the request line and header lines, without the final blank line.
    Raises ``ProtocolRefusal`` with the status to answer; otherwise returns the
    body framing the head declares: ``(content_length or None, chunked)``.
    """
    lines = LINE_SPLIT.split(raw)
    check_head_size(len(raw) - MESH_HEADER_ALLOWANCE, 0, limits)
    fields: Headers = []
    for line in lines[1:]:
        if b"\r" in line:
            raise ProtocolRefusal(400, "bare CR in a header line")
        if line[:1] in (b" ", b"\t"):
            raise ProtocolRefusal(400, "obsolete line folding (obs-fold) in the request headers")
        name, colon, value = line.partition(b":")
        if not colon:
            raise ProtocolRefusal(400, "header line without a colon")
        if not name or name != name.rstrip(b" \t"):
            raise ProtocolRefusal(400, "whitespace before the colon of a header name")
        fields.append((name.lower(), value.strip(b" \t")))
    check_fields_size(len(raw), fields, limits)
    return check_request_fields(fields, limits)


def check_fields_size(head_bytes: int, fields: Headers, limits: Limits) -> None:
    """431 for a head of ``head_bytes`` with ``fields`` over a limit, the mesh's own aside.

    A hop adds (or replaces) one each of ``MESH_ADDED``: one of each is not
    counted, nor their bytes (up to ``MESH_HEADER_ALLOWANCE``), so a request
    the client sent within the limits stays within them at every hop.
    """
    added: set[bytes] = set()
    added_bytes = 0
    for name, value in fields:
        if name in MESH_ADDED:
            added.add(name)
            added_bytes += len(name) + len(value) + 4
    counted_bytes = head_bytes - min(added_bytes, MESH_HEADER_ALLOWANCE)
    check_head_size(counted_bytes, len(fields) - len(added), limits)


def check_head_size(head_bytes: int, header_count: int, limits: Limits) -> None:
    """431 for a request head over the byte or the count limit (as counted by the caller)."""
    if head_bytes > limits.max_header_bytes:
        raise ProtocolRefusal(431, f"request header block over {limits.max_header_bytes} bytes")
    if header_count > limits.max_header_count:
        raise ProtocolRefusal(431, f"more than {limits.max_header_count} request headers")


def check_request_fields(fields: Headers, limits: Limits) -> tuple[int | None, bool]:
    """The framing, Host and ``Connection`` rules on parsed ``(lower-case name, value)`` fields.

    Every refusal here is a 400 except an over-limit body (413) and an unknown
    transfer coding (501); returns ``(content_length or None, chunked)``.
    """
    content_lengths: set[bytes] = set()
    transfer_encodings: list[bytes] = []
    hosts = 0
    for name, value in fields:
        if name == b"content-length":
            content_lengths.update(part.strip() for part in value.split(b","))
        elif name == b"transfer-encoding":
            transfer_encodings.extend(part.strip().lower() for part in value.split(b","))
        elif name == b"host":
            hosts += 1
            if not HOST.match(value):
                raise ProtocolRefusal(400, "malformed Host header")
        elif name == b"connection":
            _check_connection(value)
    framing = _declared_framing(content_lengths, transfer_encodings, limits)
    if hosts == 0:
        raise ProtocolRefusal(400, "missing Host header")
    if hosts > 1:
        raise ProtocolRefusal(400, "more than one Host header")
    return framing


def _check_connection(value: bytes) -> None:
    named = sorted(connection_tokens(value) & FRAMING_AND_ROUTING)
    if named:
        raise ProtocolRefusal(
            400, f"Connection names the framing or routing header {named[0].decode()!r}"
        )


def _declared_framing(
    content_lengths: set[bytes], transfer_encodings: list[bytes], limits: Limits
) -> tuple[int | None, bool]:
    if content_lengths and transfer_encodings:
        raise ProtocolRefusal(400, "both Content-Length and Transfer-Encoding in one request")
    if len(content_lengths) > 1:
        raise ProtocolRefusal(400, "conflicting Content-Length values")
    declared_length: int | None = None
    if content_lengths:
        (length,) = content_lengths
        if not length.isdigit():
            raise ProtocolRefusal(400, "Content-Length is not a number")
        declared_length = int(length)
        if limits.max_body_bytes is not None and declared_length > limits.max_body_bytes:
            raise ProtocolRefusal(413, f"request body over {limits.max_body_bytes} bytes")
    if transfer_encodings and transfer_encodings != [b"chunked"]:
        raise ProtocolRefusal(501, "only a single Transfer-Encoding: chunked is supported")
    return declared_length, bool(transfer_encodings)
