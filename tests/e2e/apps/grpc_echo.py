"""A gRPC server without generated code, on 127.0.0.1:$PORT (h2c).

Methods (bytes in, bytes out): ``/test.Echo/Say`` echoes, ``/test.Echo/Count``
streams ``n`` messages for a request ``n``, ``/test.Echo/Fail`` answers
NOT_FOUND with a message.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc


def _identity(data: bytes) -> bytes:
    return data


def say(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"echo:" + request


def count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for number in range(int(request)):
        yield str(number).encode()


def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())
    raise AssertionError("abort raises")


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(
            say, request_deserializer=_identity, response_serializer=_identity
        ),
        "Count": grpc.unary_stream_rpc_method_handler(
            count, request_deserializer=_identity, response_serializer=_identity
        ),
        "Fail": grpc.unary_unary_rpc_method_handler(
            fail, request_deserializer=_identity, response_serializer=_identity
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    server.add_insecure_port(f"127.0.0.1:{os.environ['PORT']}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
