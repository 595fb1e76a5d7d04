"""The inbound sidecar's rate limit filter: refuse a request over a local limit.

Before a request reaches the local app, ``refuse_over_limit`` asks the
sidecar's ``RateLimiter`` (``meshkit.proxy.policy.ratelimit``) about it, keyed
by the caller's verified identity.  Over a limit the mesh answers itself:
``429`` with flag ``RL``, ``retry-after`` (whole seconds) and a reason naming
the limit and where it was declared; a gRPC request gets a trailers-only
answer with ``grpc-status`` ``RESOURCE_EXHAUSTED``.  The app never sees it.
"""

from __future__ import annotations

from meshkit.api import GRPC_STATUS_CODES
from meshkit.proxy.codec.messages import Headers, RequestHead, header_value
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.exchange import Downstream
from meshkit.proxy.flow.l7 import send_local_reply
from meshkit.proxy.flow.pipeline import Result
from meshkit.proxy.policy.flags import RATE_LIMITED, header_safe

TOO_MANY_REQUESTS = 429


async def refuse_over_limit(
    plane: DataPlane, downstream: Downstream, config: ProxyConfig, head: RequestHead
) -> Result | None:
    """Answer ``head`` with a refusal when a limit of this service is exhausted; else None."""
    limiter = plane.rate_limiter
    limiter.sync(config.rate_limits)
    refused = limiter.check(config.service, head, downstream.identity)
    if refused is None:
        return None
    extra: Headers = [(b"retry-after", str(refused.retry_after).encode())]
    body: bytes | None = None
    status = TOO_MANY_REQUESTS
    content_type = header_value(head.headers, b"content-type") or b""
    if content_type.startswith(b"application/grpc"):
        status, body = 200, b""
        extra += [
            (b"content-type", b"application/grpc"),
            (b"grpc-status", str(GRPC_STATUS_CODES["resource-exhausted"]).encode()),
            (b"grpc-message", header_safe(refused.reason).encode()),
        ]
    keep = await send_local_reply(
        downstream, status, RATE_LIMITED, refused.reason, extra=extra, body=body
    )
    return Result(status=status, flag=RATE_LIMITED, keep_alive=keep)
