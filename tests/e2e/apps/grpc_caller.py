"""A mesh app that calls a gRPC service by its mesh name with nothing but its environment:
grpcio honours ``http_proxy`` (the sidecar's outbound listener) by sending ``CONNECT``.

``GET /call?target=rpc:50051&say=hello`` answers JSON ``{"reply": ...}`` or
``{"code": ..., "details": ...}`` when the call failed; ``/healthz`` is 200.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import grpc


def _identity(data: bytes) -> bytes:
    return data


def call(target: str, say: str) -> dict[str, str]:
    with grpc.insecure_channel(target) as channel:
        method = channel.unary_unary(
            "/test.Echo/Say", request_serializer=_identity, response_deserializer=_identity
        )
        try:
            return {"reply": method(say.encode(), timeout=10).decode()}
        except grpc.RpcError as error:
            return {"code": error.code().name, "details": error.details() or ""}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        document: object = {"ok": True}
        if parts.path == "/call":
            document = call(query.get("target", "rpc:50051"), query.get("say", "hello"))
        body = json.dumps(document).encode()
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
