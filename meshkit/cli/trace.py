"""``meshkit trace [REQUEST_OR_TRACE_ID] [--json]``: one request's trace, as a tree of spans.

The id is a trace id (32 hex digits, from ``traceparent``) or the
``x-request-id`` of any hop of the request.  Without one, the newest traces.
Each line is one span: kind (``client`` on the caller's sidecar, ``server``
on the callee's), instance, method and path, where it went, status, flag and
duration; children are indented under their parent.
"""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import quote

from meshkit.observe.client import ObserveUnavailable, observe_json
from meshkit.observe.spans import render_tree, span_nodes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="print a request's trace as a tree of spans (or the newest traces)",
        description="Print the trace of a request (by its x-request-id or trace id).",
    )
    parser.add_argument("id", metavar="REQUEST_OR_TRACE_ID", nargs="?", default=None)
    parser.add_argument("--json", action="store_true", help="print the trace as JSON")


def run(args: argparse.Namespace) -> int:
    path = "/api/traces" if args.id is None else f"/api/traces/{quote(args.id, safe='')}"
    try:
        status, document = observe_json(path)
    except ObserveUnavailable as error:
        print(f"meshkit trace: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"meshkit trace: {document.get('error', status)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(document, indent=2))
    elif args.id is None:
        for trace in document["traces"]:
            print(
                f"{trace['trace_id']}  {trace['route']}  {trace['spans']} spans  "
                f"{trace['status']}  {trace['duration_ms']:.1f}ms  request {trace['request_id']}"
            )
    else:
        print(f"trace {document['trace_id']}")
        print("\n".join(render_tree(span_nodes(document["spans"]))))
    return 0
