"""A tiny stdlib HTTP server shared by the example services.

Each service is a ``ThreadingHTTPServer`` on ``127.0.0.1:$PORT`` (the port the
mesh gives it) speaking HTTP/1.1 with keep-alive.  Nothing here knows about
meshkit beyond the environment variables it sets.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler], tuple[int, str, bytes]]

# A request's trace travels in these headers: an app copies them from the
# request it serves onto every request it makes for it (as Istio asks).
TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "x-request-id",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
)


def trace_headers(request: BaseHTTPRequestHandler) -> dict[str, str]:
    """The trace headers of ``request``, to send on with the calls made for it."""
    return {name: value for name in TRACE_HEADERS if (value := request.headers.get(name))}


def json_body(data: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps(data).encode()


def serve(name: str, routes: dict[str, Handler]) -> None:
    """Serve ``routes`` (exact path -> handler) until SIGTERM."""

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One write per response (headers and body buffered, flushed after the
        # handler) and TCP_NODELAY: without them the body waits for the delayed
        # ACK of the headers, ~40 ms per keep-alive request.
        wbufsize = 65536
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            handler = routes.get(path)
            if handler is None:
                status, ctype, body = 404, "text/plain", f"{name}: no route {path}\n".encode()
            else:
                try:
                    status, ctype, body = handler(self)
                except Exception as exc:  # an example app reports, it does not crash
                    status, ctype, body = 502, "text/plain", f"{name}: {exc}\n".encode()
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            if self.path == "/healthz":
                return  # probed every second by the mesh: not worth a line
            sys.stderr.write(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), RequestHandler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{name} listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
