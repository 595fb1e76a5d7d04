"""Trace context at every hop: W3C traceparent, B3, span ids, request ids, and the span store."""

from __future__ import annotations

import json
import random

import attrs
import pytest

from meshkit.observe.spans import SpanStore, render_tree, span_nodes, spans_from_rows, tree
from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.telemetry.spans import Tracer
from meshkit.proxy.telemetry.tracing import (
    SPAN_FIELDS,
    Span,
    begin_span,
    parse_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def row(span: Span) -> list[object]:
    """A span as a sidecar ships it: its values in ``SPAN_FIELDS`` order."""
    return [getattr(span, name) for name in SPAN_FIELDS]


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def test_traceparent_is_parsed_by_the_w3c_rules() -> None:
    context = parse_traceparent(f"00-{TRACE}-{PARENT}-01".encode())
    assert context is not None
    assert (context.trace_id, context.parent_id, context.sampled) == (TRACE, PARENT, True)
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-00".encode()).sampled is False  # type: ignore[union-attr]
    # A later version may carry more fields; version ff, zero ids and bad hex are invalid.
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-01-extra".encode()) is not None
    for bad in (
        f"ff-{TRACE}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE}-{PARENT}-01-extra",
        f"00-{TRACE[:-1]}g-{PARENT}-01",
        "garbage",
    ):
        assert parse_traceparent(bad.encode()) is None, bad


def test_a_hop_continues_the_trace_and_becomes_the_parent_of_the_next() -> None:
    headers = [
        (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
        (b"tracestate", b"vendor=1"),
        (b"x-request-id", b"req-1"),
    ]
    span, out = begin_span(headers, kind="server", start=5.0, rng=random.Random(1))
    assert (span.trace_id, span.parent_id, span.request_id) == (TRACE, PARENT, "req-1")
    assert header(out, b"traceparent") == [f"00-{TRACE}-{span.span_id}-01".encode()]
    assert header(out, b"tracestate") == [b"vendor=1"]
    assert header(out, b"x-request-id") == [b"req-1"]
    assert span.span_id != PARENT and len(span.span_id) == 16


def test_a_request_without_context_starts_a_trace_and_gets_a_request_id() -> None:
    span, out = begin_span([(b"host", b"catalog")], kind="client", start=0.0, rng=random.Random(2))
    assert span.parent_id is None and len(span.trace_id) == 32
    [request_id] = header(out, b"x-request-id")
    assert span.request_id == request_id.decode()
    assert header(out, b"traceparent")[0].startswith(f"00-{span.trace_id}-{span.span_id}".encode())


def test_b3_headers_are_read_and_rewritten_for_the_next_hop() -> None:
    multi = [(b"x-b3-traceid", PARENT), (b"x-b3-spanid", b"a" * 16), (b"x-b3-sampled", b"1")]
    span, out = begin_span(
        [(name, value if isinstance(value, bytes) else value.encode()) for name, value in multi],
        kind="client",
        start=0.0,
        rng=random.Random(3),
    )
    assert span.trace_id == "0" * 16 + PARENT and span.parent_id == "a" * 16
    assert header(out, b"x-b3-spanid") == [span.span_id.encode()]
    assert header(out, b"x-b3-parentspanid") == [b"a" * 16]
    single, out = begin_span(
        [(b"b3", f"{TRACE}-{PARENT}-1".encode())], kind="client", start=0.0, rng=random.Random(4)
    )
    assert (single.trace_id, single.parent_id) == (TRACE, PARENT)
    assert header(out, b"b3") == [f"{TRACE}-{single.span_id}-1".encode()]
    # A valid traceparent wins over B3.
    both, _ = begin_span(
        [
            (b"b3", f"{TRACE}-{PARENT}-1".encode()),
            (b"traceparent", f"00-{'1' * 32}-{PARENT}-01".encode()),
        ],
        kind="client",
        start=0.0,
        rng=random.Random(5),
    )
    assert both.trace_id == "1" * 32


def _finish(tracer: Tracer, head: RequestHead, kind: str, instance: str) -> tuple[str, RequestHead]:
    span, head = tracer.begin(head, kind=kind)  # type: ignore[arg-type]
    tracer.finish(
        span,
        service=instance.split("-")[0],
        instance=instance,
        method=b"GET",
        target=b"/x?y",
        upstream="next",
        status=200,
        flag="-",
        duration_ms=1.0,
    )
    return span.span_id, head


def test_spans_from_three_hops_make_one_tree_found_by_request_id() -> None:
    clock = iter(float(tick) for tick in range(100))
    tracer = Tracer(wall_clock=lambda: next(clock), rng=random.Random(6))
    head = RequestHead(method=b"GET", target=b"/x", headers=[], http_version=b"1.1")
    gateway, head = _finish(tracer, head, "client", "gateway")
    frontend_in, head = _finish(tracer, head, "server", "frontend-0")
    frontend_out, head = _finish(tracer, head, "client", "frontend-0")
    catalog_in, head = _finish(tracer, head, "server", "catalog-v1-0")
    store = SpanStore()
    batch = tracer.take_batch()
    assert len(batch) == 4 and len(tracer) == 0
    assert store.add("gateway", [row(span) for span in batch]) == 4
    request_id = batch[0].request_id
    [root] = tree(store.trace(request_id))
    assert root.span.span_id == gateway
    assert [child.span.span_id for child in root.children] == [frontend_in]
    assert root.children[0].children[0].span.span_id == frontend_out
    assert root.children[0].children[0].children[0].span.span_id == catalog_in
    assert root.span.route == "/x"
    again = span_nodes([node.to_dict() for node in [root]])
    assert render_tree(again) == render_tree([root])
    assert len(render_tree([root])) == 4
    assert render_tree([root])[3].startswith("      server catalog-v1-0 GET /x")
    assert store.recent_traces()[0]["spans"] == 4


def test_the_buffer_is_bounded_and_counts_what_it_drops() -> None:
    tracer = Tracer(capacity=2)
    head = RequestHead(method=b"GET", target=b"/", headers=[], http_version=b"1.1")
    for _ in range(5):
        _finish(tracer, head, "client", "a-0")
    assert len(tracer) == 2 and tracer.dropped == 3


def test_the_store_refuses_malformed_spans_by_field() -> None:
    store = SpanStore(capacity=3)
    span = Span(
        trace_id=TRACE, span_id=PARENT, parent_id=None, kind="client", service="a", instance="a-0",
        method="GET", route="/", upstream="b-0", status=200, flag="-", start=1.0,
        duration_ms=2, request_id="r",
    )  # fmt: skip
    good = row(span)

    def bad(field: str, value: object) -> list[object]:
        return [
            value if name == field else got for name, got in zip(SPAN_FIELDS, good, strict=True)
        ]

    with pytest.raises(ValueError, match="'status' must be int"):
        store.add("a-0", [bad("status", "200")])
    with pytest.raises(ValueError, match="'kind'"):
        store.add("a-0", [bad("kind", "weird")])
    with pytest.raises(ValueError, match="not a row"):
        store.add("a-0", ["x"])
    assert len(store) == 0
    store.add("a-0", [good] * 5)
    assert len(store) == 3


def test_a_proxy_requests_absolute_target_is_recorded_as_its_path() -> None:
    tracer = Tracer()
    span, _ = tracer.begin(
        RequestHead(method=b"GET", target=b"/", headers=[], http_version=b"1.1"), kind="client"
    )
    for target, route in ((b"http://catalog/items?x=1", "/items"), (b"http://catalog", "/")):
        tracer.finish(
            span, service="a", instance="a-0", method=b"GET", target=target, upstream="b",
            status=200, flag="-", duration_ms=1.0,
        )  # fmt: skip
        assert tracer.take_batch()[0].route == route


def test_otlp_encoding_decodes_with_the_opentelemetry_definitions() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from meshkit.observe.otlp import check_otlp_url, encode_spans

    spans = [
        Span(
            trace_id=TRACE, span_id=PARENT, parent_id=None, kind="client", service="gateway",
            instance="gateway", method="GET", route="/", upstream="frontend-0", status=404,
            flag="NR", start=1700000000.25, duration_ms=3.5, request_id="r",
        ),
        Span(
            trace_id=TRACE, span_id="1" * 16, parent_id=PARENT, kind="server", service="frontend",
            instance="frontend-0", method="GET", route="/", upstream="local app", status=200,
            flag="-", start=1700000000.5, duration_ms=1.0, request_id="r",
        ),
    ]  # fmt: skip
    decoded = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert len(decoded.resource_spans) == 2
    gateway = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert gateway.trace_id.hex() == TRACE and gateway.span_id.hex() == PARENT
    assert gateway.parent_span_id == b"" and gateway.kind == 3
    assert gateway.status.code == 2 and "NR" in gateway.status.message
    assert gateway.end_time_unix_nano - gateway.start_time_unix_nano == 3_500_000
    frontend = decoded.resource_spans[1].scope_spans[0].spans[0]
    assert frontend.parent_span_id.hex() == PARENT and frontend.kind == 2
    assert frontend.status.code == 1
    assert decoded.resource_spans[1].resource.attributes[0].value.string_value == "frontend"
    with pytest.raises(ValueError, match="http://host:port"):
        check_otlp_url("https://collector:4318/v1/traces")


def test_spans_ship_as_rows_of_the_values_of_their_span() -> None:
    tracer = Tracer()
    for kind, instance in (("client", "a-0"), ("server", "b-0")):
        head = RequestHead(method=b"GET", target=b"/x?q=1", headers=[], http_version=b"1.1")
        _finish(tracer, head, kind, instance)
    copy = Tracer()
    copy._pending.extend(tracer._pending)
    shipped = tracer.take_shippable()
    assert [dict(zip(SPAN_FIELDS, values, strict=True)) for values in shipped] == [
        span.to_dict() for span in copy.take_batch()
    ]
    assert tuple(field.name for field in attrs.fields(Span)) == SPAN_FIELDS
    assert all(len(values) == len(SPAN_FIELDS) for values in shipped)


def test_a_shipped_batch_round_trips_through_json_into_the_store() -> None:
    tracer = Tracer(rng=random.Random(3))
    head = RequestHead(
        method=b"POST", target=b"http://b/items?x=1", headers=[], http_version=b"1.1"
    )
    for index in range(7):
        span, head = tracer.begin(head, kind="server" if index % 2 else "client")
        tracer.finish(
            span, service="a", instance="a-0", method=b"POST", target=b"http://b/items?x=1",
            upstream="b-0", status=200 + index, flag="-", duration_ms=index / 3,
        )  # fmt: skip
    copy = Tracer()
    copy._pending.extend(tracer._pending)
    body = json.dumps({"spans": tracer.take_shippable()})
    store = SpanStore()
    assert store.add("a-0", json.loads(body)["spans"]) == 7
    assert store.spans() == copy.take_batch()
    assert store.spans()[3].route == "/items" and store.spans()[3].parent_id is not None
    assert store.spans()[0].parent_id is None and store.spans()[6].status == 206
    # JSON may give a whole float as an int; it is kept as the float it is.
    whole = json.loads(body)["spans"]
    whole[0][SPAN_FIELDS.index("start")] = 5
    assert spans_from_rows(whole)[0].start == 5.0
    assert type(spans_from_rows(whole)[0].start) is float
    assert spans_from_rows([]) == []


@pytest.mark.parametrize(
    ("index", "field", "value", "message"),
    [
        (4, "status", "200", "span 4 from 'a-0': span field 'status' must be int, not '200'"),
        (2, "status", True, "span 2 from 'a-0': span field 'status' must be int, not True"),
        (0, "start", None, "span 0 from 'a-0': span field 'start' must be float, not None"),
        (3, "trace_id", 7, "span 3 from 'a-0': span field 'trace_id' must be str, not 7"),
        (1, "span_id", None, "span 1 from 'a-0': span field 'span_id' must be str, not None"),
        (5, "kind", "peer", "span 5 from 'a-0': span field 'kind' must be 'client' or 'server'"),
    ],
)
def test_a_malformed_row_is_refused_naming_its_index_and_field(
    index: int, field: str, value: object, message: str
) -> None:
    tracer = Tracer()
    head = RequestHead(method=b"GET", target=b"/", headers=[], http_version=b"1.1")
    for _ in range(6):
        _finish(tracer, head, "client", "a-0")
    rows = json.loads(json.dumps(tracer.take_shippable()))
    rows[index][SPAN_FIELDS.index(field)] = value
    store = SpanStore()
    with pytest.raises(ValueError) as refused:
        store.add("a-0", rows)
    assert str(refused.value).startswith(message)
    assert len(store) == 0 and store.received == 0


def test_a_row_of_the_wrong_shape_is_refused_naming_its_index() -> None:
    good = [TRACE, PARENT, None, "client", "a", "a-0", "GET", "/", "b", 200, "-", 1.0, 1.0, "r"]
    assert spans_from_rows([good])[0].request_id == "r"
    for shaped in (good[:-1], [*good, "extra"], {"trace_id": TRACE}, "x", None):
        with pytest.raises(ValueError, match=r"^span 1 from 'a-0' is not a row of its 14 values"):
            SpanStore().add("a-0", [good, shaped, good])
