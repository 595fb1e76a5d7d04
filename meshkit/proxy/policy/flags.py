"""The mesh's own answers: Envoy's response flags, and the local reply that carries one.

Every response the mesh produces itself (rather than the app) says which part
of the mesh produced it, as Envoy does, in two headers: ``x-meshkit-flag``
(the flag, e.g. ``UO``) and ``x-meshkit-reason`` (a short sentence), with the
same sentence as a plain-text body.
"""

from __future__ import annotations

from types import MappingProxyType

from meshkit.proxy.codec.messages import Headers

FLAG_HEADER = b"x-meshkit-flag"
REASON_HEADER = b"x-meshkit-reason"

TIMEOUT = "UT"
NO_HEALTHY_UPSTREAM = "UH"
OVERFLOW = "UO"
FAULT_ABORT = "FI"
FAULT_DELAY = "DI"
RETRY_LIMIT_EXCEEDED = "URX"
CONNECT_FAILURE = "UF"
NO_ROUTE = "NR"
RATE_LIMITED = "RL"
DOWNSTREAM_RESET = "DR"
DOWNSTREAM_CLOSED = "DC"

FLAG_MEANINGS = MappingProxyType(
    {
        TIMEOUT: "the request timed out upstream",
        NO_HEALTHY_UPSTREAM: "no healthy instance of the destination",
        OVERFLOW: "a circuit breaker is open (too many connections, requests or retries)",
        FAULT_ABORT: "aborted by fault injection",
        FAULT_DELAY: "delayed by fault injection",
        RETRY_LIMIT_EXCEEDED: "the upstream failed and the retries are exhausted",
        CONNECT_FAILURE: "the upstream could not be reached",
        NO_ROUTE: "no route matches the request",
        RATE_LIMITED: "refused by a local rate limit of the destination (see retry-after)",
        DOWNSTREAM_RESET: "the client reset the stream before its answer (access log only)",
        DOWNSTREAM_CLOSED: "the client's connection ended before its answer (access log only)",
    }
)
"""Each flag and what it tells a person reading a response."""

_MAX_REASON = 200


def header_safe(reason: str) -> str:
    """``reason`` made safe for a header: printable ASCII, one line, bounded length."""
    cleaned = "".join(char if " " <= char <= "~" else "?" for char in reason)
    return cleaned.strip()[:_MAX_REASON]


def local_reply(
    status: int, flag: str, reason: str, *, extra: Headers | None = None
) -> tuple[Headers, bytes]:
    """The headers and body of a response the mesh produces itself.

    The body is ``reason`` and the flag, on one line, for a person with curl;
    the headers carry the flag and the reason for programs, plus ``extra``
    (a redirect's ``location``, say).
    """
    safe = header_safe(reason)
    body = f"{safe} ({flag})\n".encode() if flag else f"{safe}\n".encode()
    headers: Headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if flag:
        headers.append((FLAG_HEADER, flag.encode("ascii")))
    headers.append((REASON_HEADER, safe.encode("ascii")))
    headers.extend(extra or [])
    return headers, body


def flags_of(*flags: str) -> str:
    """Several flags as Envoy writes them (``DI,FI``), or ``-`` for none."""
    present = [flag for flag in flags if flag]
    return ",".join(present) if present else "-"
