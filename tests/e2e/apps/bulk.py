"""A test app that streams large bodies: GET /bytes?n=N sends N bytes,
POST /count reads the whole request body and answers how many bytes it saw.
Both stream in 64 KiB chunks and never hold a body in memory."""

from __future__ import annotations

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = b"x" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._reply(b"ok\n")
            return
        n = int(parse_qs(url.query).get("n", ["0"])[0])
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(n))
        self.end_headers()
        while n > 0:
            piece = CHUNK[: min(n, len(CHUNK))]
            self.wfile.write(piece)
            n -= len(piece)

    def do_POST(self) -> None:
        seen = 0
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = size
                while remaining:
                    remaining -= len(self.rfile.read(min(remaining, 65536)))
                seen += size
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("content-length", "0"))
            while remaining:
                data = self.rfile.read(min(remaining, 65536))
                if not data:
                    break
                remaining -= len(data)
                seen += len(data)
        self._reply(f"{seen}\n".encode())

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
