"""The inbound sidecar's rate limit filter: refuse a request over a local limit.

Before a request reaches the local app, ``refuse_over_limit`` asks the
sidecar's ``RateLimiter`` (``meshkit.proxy.policy.ratelimit``) about it, keyed
by the caller's verified identity.  Over a limit the mesh answers itself:
``429`` with flag ``RL``, ``retry-after`` (whole seconds) and a reason naming
the limit and where it was declared; a gRPC request gets it as a trailers-only
answer (``meshkit.proxy.policy.grpcreply``) with ``grpc-status``
``RESOURCE_EXHAUSTED``.  The app never sees it.
"""

from __future__ import annotations

from meshkit.api import GRPC_STATUS_CODES
from meshkit.proxy.codec.messages import Headers, RequestHead
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.exchange import Downstream
from meshkit.proxy.flow.l7 import send_local_reply
from meshkit.proxy.flow.pipeline import Result
from meshkit.proxy.policy.flags import RATE_LIMITED
from meshkit.proxy.policy.grpcreply import GRPC_STATUS

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
    extra: Headers = [
        (b"retry-after", str(refused.retry_after).encode()),
        # Envoy's mapping would make a 429 UNAVAILABLE; the override says what happened.
        (GRPC_STATUS, str(GRPC_STATUS_CODES["resource-exhausted"]).encode()),
    ]
    keep = await send_local_reply(
        downstream, TOO_MANY_REQUESTS, RATE_LIMITED, refused.reason, extra=extra
    )
    return Result(status=TOO_MANY_REQUESTS, flag=RATE_LIMITED, keep_alive=keep)
