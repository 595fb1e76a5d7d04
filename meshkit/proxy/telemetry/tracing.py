"""Trace context at every hop, and the spans a sidecar records (pure).

W3C Trace Context (``traceparent: 00-<trace id>-<parent id>-<flags>``, with
``tracestate`` passed on untouched) is read from every request; B3 headers
(``b3: <trace>-<span>[-<sampled>[-<parent>]]`` or ``x-b3-traceid`` /
``x-b3-spanid`` / ``x-b3-sampled``) are read when there is no valid
``traceparent``, and rewritten for the next hop when the request carried them.
A request with neither starts a new trace at the first sidecar it crosses.

Each sidecar records one span per request: a ``client`` span on the caller's
side (outbound, upstream and gateway listeners) and a ``server`` span on the
callee's (inbound).  The span's id goes on in the request's ``traceparent``,
so the next hop's span is its child; the app must copy ``traceparent``,
``tracestate`` and ``x-request-id`` from the request it serves to the requests
it makes, as Istio asks of apps, for its calls to join the trace.

``begin_span`` also gives a request without ``x-request-id`` one, so that the
span, the call log and the access log all know it by the same id.
"""

from __future__ import annotations

import random
import re
from typing import Any, Literal

import attrs

from meshkit.proxy.codec.headers import REQUEST_ID_HEADER, new_request_id
from meshkit.proxy.codec.messages import Headers

SpanKind = Literal["client", "server"]

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
B3_SINGLE = b"b3"
B3_TRACE_ID = b"x-b3-traceid"
B3_SPAN_ID = b"x-b3-spanid"
B3_PARENT_SPAN_ID = b"x-b3-parentspanid"
B3_SAMPLED = b"x-b3-sampled"
_B3_MULTI = (B3_TRACE_ID, B3_SPAN_ID, B3_PARENT_SPAN_ID, B3_SAMPLED)
_REPLACED = frozenset({TRACEPARENT, B3_SINGLE, *_B3_MULTI})
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


_HEX_OF_LENGTH = {length: re.compile(rb"[0-9a-f]{%d}" % length) for length in (2, 16, 32)}
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def _is_hex(value: bytes, length: int) -> bool:
    return _HEX_OF_LENGTH[length].fullmatch(value) is not None


@attrs.frozen(kw_only=True)
class TraceContext:
    """Where a request stands in a trace: its trace, the span that sent it, sampling."""

    trace_id: str
    parent_id: str | None
    sampled: bool = True
    b3: Literal["", "single", "multi"] = ""


def parse_traceparent(value: bytes) -> TraceContext | None:
    """A valid version-00 (or later, read as 00) ``traceparent``, else None."""
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceContext(
        trace_id=trace_id.decode(), parent_id=parent_id.decode(), sampled=bool(int(flags, 16) & 1)
    )


def _b3_trace_id(value: bytes) -> bytes | None:
    value = value.strip().lower()
    if _is_hex(value, 16):
        return b"0" * 16 + value
    return value if _is_hex(value, 32) and value != _ZERO_TRACE else None


def parse_b3(headers: dict[bytes, bytes]) -> TraceContext | None:
    """The B3 context of a request (single ``b3`` header first), else None."""
    single = headers.get(B3_SINGLE)
    if single is not None:
        parts = single.strip().lower().split(b"-")
        trace_id = _b3_trace_id(parts[0]) if len(parts) >= 2 else None
        if trace_id is None or not _is_hex(parts[1], 16):
            return None
        sampled = len(parts) < 3 or parts[2] in (b"1", b"d")
        return TraceContext(
            trace_id=trace_id.decode(), parent_id=parts[1].decode(), sampled=sampled, b3="single"
        )
    raw_trace, span = headers.get(B3_TRACE_ID), headers.get(B3_SPAN_ID)
    if raw_trace is None or span is None:
        return None
    trace_id = _b3_trace_id(raw_trace)
    span = span.strip().lower()
    if trace_id is None or not _is_hex(span, 16):
        return None
    sampled = headers.get(B3_SAMPLED, b"1").strip() in (b"1", b"true")
    return TraceContext(
        trace_id=trace_id.decode(), parent_id=span.decode(), sampled=sampled, b3="multi"
    )


class OpenSpan:
    """A span begun when a request arrived; ``finish`` it when the request is answered.

    A plain slotted class, not attrs: one is made per request on the hot path.
    """

    __slots__ = ("kind", "parent_id", "request_id", "span_id", "start", "trace_id")

    def __init__(
        self,
        *,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        kind: SpanKind,
        request_id: str,
        start: float,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.kind: SpanKind = kind
        self.request_id = request_id
        self.start = start


def new_span_id(rng: random.Random) -> str:
    return "%016x" % (rng.getrandbits(64) | 1)


def begin_span(
    headers: Headers, *, kind: SpanKind, start: float, rng: random.Random
) -> tuple[OpenSpan, Headers]:
    """Open this hop's span and the request's headers for the next hop (see the module doc)."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _REPLACED or name == REQUEST_ID_HEADER:
            found.setdefault(name, value)
    context = None
    if TRACEPARENT in found:
        context = parse_traceparent(found[TRACEPARENT])
    if context is None:
        context = parse_b3(found)
    if context is None:
        context = TraceContext(trace_id="%032x" % (rng.getrandbits(128) | 1), parent_id=None)
    span_id = new_span_id(rng)
    request_id = found.get(REQUEST_ID_HEADER) or new_request_id()
    rewritten: Headers = [(name, value) for name, value in headers if name not in _REPLACED]
    flags = b"01" if context.sampled else b"00"
    rewritten.append(
        (TRACEPARENT, b"00-%s-%s-%s" % (context.trace_id.encode(), span_id.encode(), flags))
    )
    if context.b3 == "single":
        rewritten.append(
            (B3_SINGLE, b"%s-%s-%s" % (context.trace_id.encode(), span_id.encode(), flags[1:]))
        )
    elif context.b3 == "multi":
        rewritten += [
            (B3_TRACE_ID, context.trace_id.encode()),
            (B3_SPAN_ID, span_id.encode()),
            (B3_SAMPLED, flags[1:]),
        ]
        if context.parent_id is not None:
            rewritten.append((B3_PARENT_SPAN_ID, context.parent_id.encode()))
    if REQUEST_ID_HEADER not in found:
        rewritten.append((REQUEST_ID_HEADER, request_id))
    span = OpenSpan(
        trace_id=context.trace_id,
        span_id=span_id,
        parent_id=context.parent_id,
        kind=kind,
        request_id=request_id.decode("ascii", "replace"),
        start=start,
    )
    return span, rewritten


@attrs.frozen(kw_only=True)
class Span:
    """One finished span, as it is shipped to the control plane (``time`` in epoch seconds)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    kind: SpanKind
    service: str
    instance: str
    method: str
    route: str
    upstream: str
    status: int
    flag: str
    start: float
    duration_ms: float
    request_id: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        """A span from its JSON form; raises ``ValueError`` naming the bad field."""
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            value = data.get(field.name)
            if field.name == "parent_id" and value is None:
                values[field.name] = None
                continue
            expected = field_type(field.name)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ValueError(
                    f"span field '{field.name}' must be {expected.__name__}, not {value!r}"
                )
            values[field.name] = value
        if values["kind"] not in SPAN_KINDS:
            raise ValueError(
                f"span field 'kind' must be 'client' or 'server', not {values['kind']!r}"
            )
        return cls(**values)


# The JSON type of each span field that is not a string (``parent_id`` may also be
# null), and the kinds a span may have: ``Span.from_dict`` and the control plane's
# column check of shipped rows (``meshkit.observe.spans``) both read them.
NON_STRING_FIELDS: dict[str, type] = {"status": int, "start": float, "duration_ms": float}
SPAN_KINDS = ("client", "server")


def field_type(name: str) -> type:
    return NON_STRING_FIELDS.get(name, str)


# The order of a span's values in the rows a sidecar ships (``Tracer.take_shippable``).
SPAN_FIELDS: tuple[str, ...] = tuple(field.name for field in attrs.fields(Span))
