"""Header rewriting at the proxy boundary (pure functions, no I/O).

Hop-by-hop headers (RFC 9110 7.6.1) describe one connection and never cross a
proxy, in either direction; a client may name more of them in ``Connection``.
Forwarding headers are appended to, never trusted as given, and the caller's
identity header is only ever set by the sidecar from the peer certificate.

The caller's identity reaches the app as Envoy's ``x-forwarded-client-cert``
(XFCC): ``By=<this sidecar's SPIFFE ID>;URI=<the verified peer's SPIFFE ID>``,
set by the inbound sidecar from the mTLS handshake only.  Any copy a client
sent is removed on every hop, so an app can trust the header it sees.
"""

from __future__ import annotations

import random

from meshkit.proxy.codec.messages import Headers
from meshkit.proxy.codec.request_rules import FRAMING_AND_ROUTING, connection_tokens

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

IDENTITY_HEADER = b"x-forwarded-client-cert"
REQUEST_ID_HEADER = b"x-request-id"


def new_request_id() -> bytes:
    """32 hex digits; unique enough to correlate logs, not a secret (so no urandom call)."""
    return b"%032x" % random.getrandbits(128)


def strip_hop_by_hop(headers: Headers) -> Headers:
    """``headers`` without hop-by-hop ones, including those listed in ``Connection``.

    A ``Connection`` list never removes a framing or routing header: the
    bytes such a header frames travel anyway, and without it the next hop
    would read them as another message.
    """
    listed: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            listed.update(connection_tokens(value) - FRAMING_AND_ROUTING)
    return [
        (name, value) for name, value in headers if name not in HOP_BY_HOP and name not in listed
    ]


def forwarded_client_cert(*, local_identity: str | None, peer_identity: str) -> bytes:
    """The XFCC value for a request from ``peer_identity`` received by ``local_identity``."""
    by = b"" if local_identity is None else b"By=" + _xfcc_value(local_identity) + b";"
    return by + b"URI=" + _xfcc_value(peer_identity)


def _xfcc_value(value: str) -> bytes:
    # SPIFFE IDs never hold these characters; quote defensively as Envoy does.
    encoded = value.encode("ascii", errors="replace")
    if any(char in encoded for char in b',;="'):
        return b'"' + encoded.replace(b'"', b'\\"') + b'"'
    return encoded


def rewrite_request_headers(
    headers: Headers,
    *,
    client_address: str | None,
    append_forwarded_for: bool,
    identity: str | None,
    chunked: bool,
    local_identity: str | None = None,
    edge_scheme: bytes = b"http",
) -> Headers:
    """The headers to send to the next hop for a request received with ``headers``.

    * hop-by-hop headers and ``Expect`` are removed (the sidecar answers
      ``100 Continue`` itself);
    * a client-supplied ``x-forwarded-client-cert`` is dropped, and set again
      only from ``identity`` (the verified peer) as ``By=<local_identity>;URI=<identity>``;
    * ``x-forwarded-for`` gets ``client_address`` appended when
      ``append_forwarded_for`` (listeners where a request enters the mesh);
    * ``x-forwarded-proto`` is set by the edge (``append_forwarded_for``) to
      ``edge_scheme``, the scheme it really served, whatever the client sent;
      past the edge it is kept, and set to ``http`` when absent;
    * ``x-request-id`` is generated when absent, kept when present;
    * ``transfer-encoding: chunked`` is set again when the body is chunked.
    """
    result: Headers = []
    forwarded_for: bytes | None = None
    has_request_id = False
    has_proto = False
    for name, value in strip_hop_by_hop(headers):
        if name in (IDENTITY_HEADER, b"expect"):
            continue
        if name == b"x-forwarded-for" and append_forwarded_for:
            forwarded_for = _joined(forwarded_for, value)
            continue
        if name == REQUEST_ID_HEADER:
            has_request_id = True
        elif name == b"x-forwarded-proto":
            if append_forwarded_for:
                continue
            has_proto = True
        result.append((name, value))
    if append_forwarded_for and client_address is not None:
        address = client_address.encode()
        forwarded_for = _joined(forwarded_for, address)
    if forwarded_for is not None:
        result.append((b"x-forwarded-for", forwarded_for))
    if not has_proto:
        result.append((b"x-forwarded-proto", edge_scheme if append_forwarded_for else b"http"))
    if not has_request_id:
        result.append((REQUEST_ID_HEADER, new_request_id()))
    return result + _hop_headers(identity=identity, local_identity=local_identity, chunked=chunked)


def _hop_headers(*, identity: str | None, local_identity: str | None, chunked: bool) -> Headers:
    """XFCC from the verified peer, and the chunked framing, for this hop."""
    added: Headers = []
    if identity is not None:
        xfcc = forwarded_client_cert(local_identity=local_identity, peer_identity=identity)
        added.append((IDENTITY_HEADER, xfcc))
    if chunked:
        added.append((b"transfer-encoding", b"chunked"))
    return added


def _joined(previous: bytes | None, value: bytes) -> bytes:
    return value if previous is None else previous + b", " + value


def rewrite_response_headers(headers: Headers) -> Headers:
    """The headers to send back to the client for a response from the next hop.

    Framing (``content-length`` kept, chunked re-applied by the codec) is the
    codec's business; hop-by-hop headers never pass.
    """
    return strip_hop_by_hop(headers)


def is_chunked(headers: Headers) -> bool:
    return any(name == b"transfer-encoding" for name, _ in headers)
