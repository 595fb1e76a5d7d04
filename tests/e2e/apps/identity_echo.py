"""A test app that says who called it: GET /whoami answers JSON with this service's
name and the ``x-forwarded-client-cert`` it received; GET /via/<upstream>/<path>
calls ``<path>`` on the upstream through ``<UPSTREAM>_URL`` (its sidecar) and
wraps that answer in its own.  Plain standard library, HTTP/1.1 keep-alive."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE = os.environ.get("MESHKIT_SERVICE", "?")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, {"ok": True})
            return
        answer: dict[str, object] = {
            "service": SERVICE,
            "xfcc": self.headers.get_all("x-forwarded-client-cert") or [],
        }
        if self.path.startswith("/via/"):
            upstream, _, rest = self.path[len("/via/") :].partition("/")
            base = os.environ[upstream.upper().replace("-", "_") + "_URL"]
            try:
                with NO_PROXY.open(f"{base}/{rest}", timeout=10) as response:
                    answer["upstream"] = json.loads(response.read())
            except urllib.error.HTTPError as error:
                # The upstream (or the mesh for it) refused: say so, as a real answer.
                error.close()
                self._reply(502, {**answer, "upstream_status": error.code})
                return
        self._reply(200, answer)

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
