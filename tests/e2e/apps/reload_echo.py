"""A test app for hot reload: every GET answers JSON naming the service, the
instance and ``$FLAVOUR``; ``/healthz`` is its health check.  HTTP/1.1 keep-alive."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "service": os.environ.get("MESHKIT_SERVICE"),
                "instance": os.environ.get("MESHKIT_INSTANCE"),
                "flavour": os.environ.get("FLAVOUR", ""),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
