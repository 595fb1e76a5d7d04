"""``python -m meshkit.runtime.ingress_app``: the test ingress's own app.

The ingress itself is ``meshkit.runtime.ingress``.

It only anchors the ``meshkit-ingress`` instance: it listens on ``$PORT`` so
the default TCP health check passes, and answers any request that reaches it
with 404 and an explanation.
"""

from __future__ import annotations

import http.server
import os
import sys

from meshkit.runtime.ingress import INGRESS_SERVICE


class _ExplainingHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with 404: nothing should call the ingress itself."""

    def _explain(self) -> None:
        body = (
            f"this is {INGRESS_SERVICE}, the test ingress of meshkit; it serves no requests. "
            "Use the ports listed under its upstream_ports in 'meshkit status'.\n"
        ).encode()
        self.send_response(404)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _explain

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {format % args}\n")


def main() -> int:
    port = int(os.environ.get("PORT", "0"))
    with http.server.HTTPServer(("127.0.0.1", port), _ExplainingHandler) as server:
        print(f"{INGRESS_SERVICE} listening on 127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
