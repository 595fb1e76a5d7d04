"""The mesh's own answers to a gRPC request: trailers-only responses.

A gRPC client cannot read an HTTP error (``503`` with a text body): it wants
HTTP 200 and the status in ``grpc-status``.  So every local reply to a gRPC
request (``content-type: application/grpc*``) becomes a trailers-only response,
as Envoy sends one: ``:status 200``, ``content-type: application/grpc``,
``grpc-status`` from the HTTP status by Envoy's mapping
(``meshkit.api.grpc_status_of_http``: 403 is PERMISSION_DENIED, 503
UNAVAILABLE, ...), ``grpc-message`` the reason, the mesh's flag and reason
headers kept, no body.

A reply that already carries ``grpc-status`` (a fault's gRPC abort, a rate
limit's RESOURCE_EXHAUSTED) keeps it: that field is the override.  To a plain
HTTP request such an override is not shown unless the reply is a 200 (the
fault's gRPC abort answers any client that way).
"""

from __future__ import annotations

from urllib.parse import quote

import attrs

from meshkit.api import grpc_status_of_http
from meshkit.proxy.codec.messages import Headers, ResponseHead, header_value
from meshkit.proxy.policy.flags import REASON_HEADER

GRPC_CONTENT_TYPE = b"application/grpc"
GRPC_STATUS = b"grpc-status"
GRPC_MESSAGE = b"grpc-message"
_REPLACED = frozenset({b"content-type", b"content-length", GRPC_STATUS, GRPC_MESSAGE})


def is_grpc(request_headers: Headers) -> bool:
    """Whether a request is a gRPC call (its ``content-type`` is ``application/grpc*``)."""
    content_type = header_value(request_headers, b"content-type")
    return content_type is not None and content_type.startswith(GRPC_CONTENT_TYPE)


def grpc_message(reason: str) -> bytes:
    """``reason`` percent-encoded as the gRPC spec wants ``grpc-message``."""
    return quote(reason, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode("ascii")


def trailers_only(head: ResponseHead) -> ResponseHead:
    """A local reply's head as a gRPC trailers-only response (send it without a body)."""
    status = header_value(head.headers, GRPC_STATUS)
    message = header_value(head.headers, GRPC_MESSAGE)
    if message is None:
        reason = header_value(head.headers, REASON_HEADER)
        message = b"" if reason is None else grpc_message(reason.decode("latin-1"))
    headers: Headers = [
        (b"content-type", GRPC_CONTENT_TYPE),
        (GRPC_STATUS, status or str(grpc_status_of_http(head.status)).encode()),
        (GRPC_MESSAGE, message),
    ]
    headers.extend((name, value) for name, value in head.headers if name not in _REPLACED)
    return attrs.evolve(head, status=200, headers=headers)


def for_client(head: ResponseHead, body: bytes, *, grpc: bool) -> tuple[ResponseHead, bytes]:
    """A local reply as the client should get it: trailers-only for gRPC, else as made."""
    if grpc:
        return trailers_only(head), b""
    if head.status != 200 and header_value(head.headers, GRPC_STATUS) is not None:
        kept = [(n, v) for n, v in head.headers if n not in (GRPC_STATUS, GRPC_MESSAGE)]
        return attrs.evolve(head, headers=kept), body
    return head, body
