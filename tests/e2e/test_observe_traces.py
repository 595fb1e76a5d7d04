"""Traces end to end: one request through gateway -> frontend -> catalog, kept by the control plane.

The example shop's frontend passes the trace headers on, so the sidecars'
spans of one page form one tree: the gateway's client span, under it the
frontend's server span, under that the frontend's client spans to catalog
and reviews, each with the callee's server span below.  The mesh runs with
``--otlp`` pointed at a receiver in this test that decodes what it gets with
the OpenTelemetry protobuf definitions (``opentelemetry-proto``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from meshkit.observe.client import observe_json
from tests.meshproc import MeshProcess, example_meshfile

pytestmark = pytest.mark.e2e


class Collector:
    """An OTLP/HTTP trace receiver on loopback: every span it was sent, decoded."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, str], Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        resource = {
                            attribute.key: attribute.value.string_value
                            for attribute in resource_spans.resource.attributes
                        }
                        for scope_spans in resource_spans.scope_spans:
                            collector.spans += [(resource, span) for span in scope_spans.spans]
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    receiver = Collector()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("traces-shop")
    running = MeshProcess(example_meshfile(workdir), workdir, "--otlp", collector.url)
    try:
        running.wait_ready(timeout=60)
        running.wait_until(lambda s: s["gateways"] and s["gateways"][0]["sync"] == "SYNCED")
        yield running
    finally:
        running.kill_everything()


def wait_for_trace(shop: MeshProcess, request_id: str, spans: int) -> dict[str, Any]:
    run_dir = shop.workdir / ".meshkit" / "run"
    deadline = time.monotonic() + 20
    document: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, document = observe_json(f"/api/traces/{request_id}", run_dir=run_dir)
        if status == 200 and count(document["spans"]) >= spans:
            return document
        time.sleep(0.3)
    pytest.fail(f"trace of {request_id} never had {spans} spans: {document}")


def count(nodes: list[dict[str, Any]]) -> int:
    return sum(1 + count(node["children"]) for node in nodes)


def test_one_page_is_one_trace_with_the_hops_nested(shop: MeshProcess) -> None:
    request = urllib.request.Request(shop.gateway_url() + "/", headers={"x-request-id": "page-1"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    document = wait_for_trace(shop, "page-1", spans=6)
    [root] = document["spans"]
    assert (root["kind"], root["instance"], root["upstream"]) == ("client", "gateway", "frontend-0")
    assert root["parent_id"] is None and root["request_id"] == "page-1"
    [frontend] = root["children"]
    assert (frontend["kind"], frontend["instance"], frontend["parent_id"]) == (
        "server",
        "frontend-0",
        root["span_id"],
    )
    calls = {child["route"]: child for child in frontend["children"]}
    assert set(calls) == {"/items", "/reviews"}
    catalog_call = calls["/items"]
    assert catalog_call["kind"] == "client" and catalog_call["upstream"].startswith("catalog-")
    [catalog] = catalog_call["children"]
    assert catalog["kind"] == "server" and catalog["service"] == "catalog"
    assert catalog["instance"] == catalog_call["upstream"] and catalog["status"] == 200
    assert {span["trace_id"] for span in (root, frontend, catalog_call, catalog)} == {
        document["trace_id"]
    }
    # A trace given by the client is continued, not replaced.
    given = "4bf92f3577b34da6a3ce929d0e0e4736"
    request = urllib.request.Request(
        shop.gateway_url() + "/api",
        headers={"traceparent": f"00-{given}-00f067aa0ba902b7-01"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
    continued = wait_for_trace(shop, given, spans=4)
    assert continued["spans"][0]["parent_id"] == "00f067aa0ba902b7"


def test_meshkit_trace_prints_the_tree(shop: MeshProcess) -> None:
    request = urllib.request.Request(shop.gateway_url() + "/", headers={"x-request-id": "page-2"})
    with urllib.request.urlopen(request, timeout=10):
        pass
    wait_for_trace(shop, "page-2", spans=6)
    done = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "trace", "page-2"],
        cwd=shop.workdir, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("trace ")
    assert lines[1].startswith("client gateway GET / -> frontend-0 200")
    assert lines[2].startswith("  server frontend-0 GET / -> local app 200")
    assert any(line.startswith("      server catalog-") for line in lines)
    as_json = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "trace", "page-2", "--json"],
        cwd=shop.workdir, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert json.loads(as_json.stdout)["spans"][0]["instance"] == "gateway"
    missing = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "trace", "no-such-request"],
        cwd=shop.workdir, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert missing.returncode == 1 and "no trace or request 'no-such-request'" in missing.stderr


def test_the_otlp_export_carries_the_same_tree(shop: MeshProcess, collector: Collector) -> None:
    request = urllib.request.Request(shop.gateway_url() + "/", headers={"x-request-id": "page-3"})
    with urllib.request.urlopen(request, timeout=10):
        pass
    document = wait_for_trace(shop, "page-3", spans=6)
    trace_id = bytes.fromhex(document["trace_id"])
    deadline = time.monotonic() + 20
    exported: list[tuple[dict[str, str], Any]] = []
    while time.monotonic() < deadline:
        with collector.lock:
            exported = [(res, span) for res, span in collector.spans if span.trace_id == trace_id]
        if len(exported) >= 6:
            break
        time.sleep(0.3)
    assert len(exported) == 6
    by_id = {span.span_id: (resource, span) for resource, span in exported}
    [(root_resource, root)] = [pair for pair in exported if not pair[1].parent_span_id]
    assert root_resource == {"service.name": "gateway", "service.instance.id": "gateway"}
    assert root.kind == OtlpSpan.SPAN_KIND_CLIENT and root.name == "GET /"
    for _, span in exported:
        if span.parent_span_id:
            assert span.parent_span_id in by_id, "every parent was exported too"
        assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
        attributes = {a.key: a.value for a in span.attributes}
        assert attributes["http.response.status_code"].int_value == 200
        assert attributes["meshkit.request_id"].string_value == "page-3"
    catalog = [span for resource, span in exported if resource["service.name"] == "catalog"]
    assert [span.kind for span in catalog] == [OtlpSpan.SPAN_KIND_SERVER]
    parent_resource, parent = by_id[catalog[0].parent_span_id]
    assert parent_resource["service.name"] == "frontend"
    assert parent.kind == OtlpSpan.SPAN_KIND_CLIENT
