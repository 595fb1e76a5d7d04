"""The control plane's span store: the last spans of the mesh, and traces as trees (pure).

Bounded: at most ``capacity`` spans; the oldest fall out first.  A trace is
found by its trace id or by the request id of any of its spans (the
``x-request-id`` that every hop of one request carries).  ``tree`` nests a
trace's spans under their parents (a span whose parent is unknown is a root)
in start order.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import attrs

from meshkit.proxy.telemetry.tracing import SPAN_FIELDS, SPAN_KINDS, Span, field_type

DEFAULT_CAPACITY = 20_000


def _accepted(name: str) -> frozenset[type]:
    """The types a shipped value of field ``name`` may have (JSON's: an int for a float)."""
    expected = field_type(name)
    accepted = {expected, int} if expected is float else {expected}
    return frozenset({*accepted, type(None)} if name == "parent_id" else accepted)


# The fast check of a whole column; a row it refuses gets Span.from_dict's own error.
_TYPES = {name: _accepted(name) for name in SPAN_FIELDS}
_KINDS = frozenset(SPAN_KINDS)


def _malformed(index: int, source: str, problem: str) -> ValueError:
    return ValueError(f"span {index}{f' from {source!r}' if source else ''}{problem}")


def spans_from_rows(rows: list[Any], *, source: str = "") -> list[Span]:
    """Spans from the rows a sidecar ships (``Tracer.take_shippable``: each a list of
    a span's values in ``SPAN_FIELDS`` order).  Checked a column at a time; raises
    ``ValueError`` naming the index and field of the first malformed span."""
    width = len(SPAN_FIELDS)
    if not all(type(row) is list and len(row) == width for row in rows):
        index = next(i for i, row in enumerate(rows) if type(row) is not list or len(row) != width)
        raise _malformed(index, source, f" is not a row of its {width} values {list(SPAN_FIELDS)}")
    columns = list(zip(*rows, strict=True))
    bad = len(rows)  # the first row that fails a check; Span.from_dict says how
    for position, (name, column) in enumerate(zip(SPAN_FIELDS, columns, strict=False)):
        types = set(map(type, column))
        if not types <= _TYPES[name]:
            bad = min(
                bad, next(i for i, value in enumerate(column) if type(value) not in _TYPES[name])
            )
        elif int in types and float in _TYPES[name]:
            columns[position] = tuple(map(float, column))
    kinds = columns[SPAN_FIELDS.index("kind")] if columns else ()
    if not set(kinds) <= _KINDS:
        bad = min(bad, next(i for i, kind in enumerate(kinds) if kind not in _KINDS))
    if bad < len(rows):
        try:
            Span.from_dict(dict(zip(SPAN_FIELDS, rows[bad], strict=True)))
        except ValueError as error:
            raise _malformed(bad, source, f": {error}") from None
        raise AssertionError(f"span {bad}: the column checks and Span.from_dict disagree")
    return [
        Span(
            trace_id=trace_id, span_id=span_id, parent_id=parent_id, kind=kind, service=service,
            instance=instance, method=method, route=route, upstream=upstream, status=status,
            flag=flag, start=start, duration_ms=duration_ms, request_id=request_id,
        )
        for (
            trace_id, span_id, parent_id, kind, service, instance, method, route, upstream,
            status, flag, start, duration_ms, request_id,
        ) in zip(*columns, strict=True)
    ]  # fmt: skip


@attrs.frozen(kw_only=True)
class SpanNode:
    span: Span
    children: tuple[SpanNode, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.span.to_dict(), "children": [child.to_dict() for child in self.children]}


class SpanStore:
    """The newest ``capacity`` spans; ``on_added`` sees each batch kept (the OTLP export)."""

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        on_added: Callable[[list[Span]], None] | None = None,
    ) -> None:
        self._spans: collections.deque[Span] = collections.deque(maxlen=capacity)
        self._on_added = on_added
        self.received = 0

    def __len__(self) -> int:
        return len(self._spans)

    def add(self, instance: str, rows: list[Any]) -> int:
        """Keep the spans a sidecar sent (rows, ``spans_from_rows``); raises ``ValueError``
        naming the span's index and field on a malformed one (none kept)."""
        spans = spans_from_rows(rows, source=instance)
        self._spans.extend(spans)
        self.received += len(spans)
        if self._on_added is not None:
            self._on_added(spans)
        return len(spans)

    def spans(self) -> list[Span]:
        return list(self._spans)

    def trace(self, trace_or_request_id: str) -> list[Span]:
        """The spans of the trace with this id, or of the trace a request id belongs to."""
        wanted = trace_or_request_id.strip().lower()
        trace_ids = {
            span.trace_id
            for span in self._spans
            if span.trace_id == wanted or span.request_id.lower() == wanted
        }
        return sorted(
            (span for span in self._spans if span.trace_id in trace_ids),
            key=lambda span: (span.start, span.kind != "client"),
        )

    def last_calls(self, service: str, limit: int = 30) -> list[dict[str, Any]]:
        """The newest requests the sidecars of ``service`` served (its server spans), newest first."""
        calls = [
            span
            for span in reversed(self._spans)
            if span.kind == "server" and span.service == service
        ]
        return [span.to_dict() for span in calls[:limit]]

    def recent_traces(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest traces, newest first: id, root's route and service, spans, worst status."""
        by_trace: dict[str, list[Span]] = {}
        for span in self._spans:
            by_trace.setdefault(span.trace_id, []).append(span)
        roots = sorted(
            ((min(spans, key=lambda span: span.start), spans) for spans in by_trace.values()),
            key=lambda pair: pair[0].start,
            reverse=True,
        )
        return [
            {
                "trace_id": root.trace_id,
                "request_id": root.request_id,
                "start": root.start,
                "service": root.service,
                "route": f"{root.method} {root.route}",
                "spans": len(spans),
                "duration_ms": max(span.duration_ms for span in spans),
                "status": max(span.status for span in spans),
            }
            for root, spans in roots[:limit]
        ]


def tree(spans: list[Span]) -> list[SpanNode]:
    """The spans nested under their parents; roots in start order."""
    known = {span.span_id for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in sorted(spans, key=lambda span: span.start):
        parent = span.parent_id if span.parent_id in known else None
        children.setdefault(parent, []).append(span)

    def build(span: Span, depth: int) -> SpanNode:
        below = children.get(span.span_id, []) if depth < 64 else []
        return SpanNode(span=span, children=tuple(build(child, depth + 1) for child in below))

    return [build(root, 0) for root in children.get(None, [])]


def render_tree(nodes: list[SpanNode], *, indent: int = 0) -> list[str]:
    """A trace as text lines, one per span, children indented under their parent."""
    lines = []
    for node in nodes:
        span = node.span
        flag = "" if span.flag == "-" else f" {span.flag}"
        lines.append(
            f"{'  ' * indent}{span.kind:<6} {span.instance} {span.method} {span.route} "
            f"-> {span.upstream} {span.status}{flag} {span.duration_ms:.1f}ms"
        )
        lines += render_tree(list(node.children), indent=indent + 1)
    return lines


def span_nodes(documents: list[Any]) -> list[SpanNode]:
    """Trees back from their JSON form (``SpanNode.to_dict``)."""
    return [
        SpanNode(
            span=Span.from_dict(
                {key: value for key, value in document.items() if key != "children"}
            ),
            children=tuple(span_nodes(document.get("children", []))),
        )
        for document in documents
    ]
