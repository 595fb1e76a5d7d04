"""An HTTP/1.1 test app that fails each path once: the first request to a path is
answered ``503``, every later one ``200`` with JSON counting the attempts seen
for that path.  ``/healthz`` always answers ``200``."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN: dict[str, int] = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.send_json(200, {"ok": True})
            return
        with LOCK:
            SEEN[self.path] = SEEN.get(self.path, 0) + 1
            attempts = SEEN[self.path]
        self.send_json(503 if attempts == 1 else 200, {"path": self.path, "attempts": attempts})

    def send_json(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
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
