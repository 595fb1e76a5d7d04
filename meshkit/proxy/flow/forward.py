"""Forwarding one request to an endpoint (or the local app) and its response back.

The client is a ``Downstream`` (an HTTP/1.1 connection or an HTTP/2 stream);
the upstream protocol is chosen by ``h2forward.speaks_http2``: an HTTP/2
stream (``h2forward``) or a pooled HTTP/1.1 connection (``h1forward``).  Both
follow the same rules: failures before the response are answered (or left to
the caller), a breaker that admits no new connection is ``503 UO``, and
``on_response`` may hold a response back for a retry.
"""

from __future__ import annotations

from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.config import AppTarget, Endpoint, Limits
from meshkit.proxy.flow.attempt import Attempt, Outcome, ResponseHook
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.exchange import Downstream
from meshkit.proxy.flow.h1forward import forward_http1
from meshkit.proxy.flow.h2forward import forward_http2, speaks_http2
from meshkit.proxy.flow.replay import RequestBodySource


async def forward(
    *,
    plane: DataPlane,
    downstream: Downstream,
    head: RequestHead,
    target: bytes,
    destination: Endpoint | AppTarget,
    cluster_name: str,
    limits: Limits,
    append_forwarded_for: bool,
    body: RequestBodySource | None = None,
    on_response: ResponseHook | None = None,
    answer_failures: bool = True,
) -> Outcome:
    """Forward ``head`` (and its body, read from ``body`` or else ``downstream``) to ``destination``.

    ``on_response`` sees the endpoint's response head and returns the head to
    send, or None to drop the response unsent (a retry will follow).  With
    ``answer_failures=False`` a failure before the response (UF, UC, UT, UO) is
    returned unanswered for the caller to retry or answer.
    """
    attempt = Attempt(
        plane=plane,
        downstream=downstream,
        head=head,
        target=target,
        destination=destination,
        cluster_name=cluster_name,
        limits=limits,
        append_forwarded_for=append_forwarded_for,
        source=downstream if body is None else body,
        on_response=on_response,
        answer_failures=answer_failures,
    )
    if speaks_http2(downstream, destination, head=head):
        return await forward_http2(attempt)
    return await forward_http1(attempt)
