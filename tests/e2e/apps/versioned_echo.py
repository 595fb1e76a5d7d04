"""A test app for routing and resilience: every request is answered with JSON naming
``$MESHKIT_VERSION`` and ``$MESHKIT_INSTANCE`` and echoing the method, the path,
the query and the headers it received.  HTTP/1.1 keep-alive, one thread per
connection.

Query knobs: ``?status=503`` answers that status, ``?sleep=2`` waits that many
seconds first, ``?hang=1`` never answers (until the client goes away),
``?drip=2`` sends the head at once, then ten body bytes spread over 2 seconds.
``/healthz`` is the health check; ``/_stats`` counts the requests served so
far (``total``) and those that were mirrored copies (``shadow``: their Host
ends with ``-shadow``), neither counting ``/healthz`` nor ``/_stats``.  Every
answer carries ``x-app-header: app`` and ``x-app-keep: app``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

COUNTS = {"total": 0, "shadow": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def read_body(self) -> bytes:
        """The whole request body, by content-length or chunked, as a real server reads it."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self) -> None:
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        received = self.read_body()
        if parts.path == "/healthz":
            self.send_json(200, {"ok": True})
            return
        if parts.path == "/_stats":
            with LOCK:
                self.send_json(200, dict(COUNTS))
            return
        with LOCK:
            COUNTS["total"] += 1
            if (self.headers.get("host") or "").split(":")[0].endswith("-shadow"):
                COUNTS["shadow"] += 1
        if "hang" in query:
            time.sleep(3600)
        if "drip" in query:
            self.drip(float(query["drip"]))
            return
        if "sleep" in query:
            time.sleep(float(query["sleep"]))
        self.send_json(
            int(query.get("status", "200")),
            {
                "version": os.environ.get("MESHKIT_VERSION", ""),
                "instance": os.environ.get("MESHKIT_INSTANCE", ""),
                "method": self.command,
                "path": parts.path,
                "query": parts.query,
                "headers": self.received_headers(),
                "body": received.decode(errors="replace"),
            },
        )

    def drip(self, seconds: float) -> None:
        self.send_response(200)
        self.send_header("content-length", "10")
        self.end_headers()
        self.wfile.flush()
        for _ in range(10):
            time.sleep(seconds / 10)
            self.wfile.write(b"x")
            self.wfile.flush()

    def received_headers(self) -> dict[str, str]:
        """Each header once, lower-cased; repeated fields joined with ``", "`` in order."""
        joined: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        return joined

    def send_json(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-app-header", "app")
        self.send_header("x-app-keep", "app")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, format: str, *args: object) -> None:
        return


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
