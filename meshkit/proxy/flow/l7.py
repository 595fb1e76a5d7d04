"""The sidecar's side of the L7 flow: ``pipeline`` wired to a client connection.

``serve_service_request`` runs ``pipeline.route_to_service`` for a request
that the router sent to a cluster, with ``forward`` as the attempt (one try to
one endpoint, failures left to the pipeline), local replies in the mesh's own
format (``flags.local_reply``: status, ``x-meshkit-flag``, ``x-meshkit-reason``,
readable body), the request body read ahead for replay, and mirrored copies
owned by the sidecar's ``Mirrors``.
"""

from __future__ import annotations

import functools

import attrs

from meshkit.proxy.codec.headers import rewrite_request_headers
from meshkit.proxy.codec.messages import Headers, ProtocolRefusal, RequestHead, ResponseHead
from meshkit.proxy.config import Cluster, Endpoint, ProxyConfig
from meshkit.proxy.flow.attempt import Outcome, ResponseHook, served_scheme
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.exchange import Downstream
from meshkit.proxy.flow.forward import forward
from meshkit.proxy.flow.pipeline import Result, route_to_service
from meshkit.proxy.flow.replay import ReplayableBody, RequestBodySource
from meshkit.proxy.policy.flags import local_reply


async def send_local_reply(
    downstream: Downstream,
    status: int,
    flag: str,
    reason: str,
    *,
    extra: Headers | None = None,
    body: bytes | None = None,
) -> bool:
    """Send a response the mesh produced itself; True if the connection may be reused.

    ``body`` replaces the readable reason (a direct response's configured body);
    a ``content-type`` in ``extra`` replaces the plain-text one.
    """
    headers, text = local_reply(status, flag, reason, extra=extra)
    if body is not None:
        text = body
        headers = [
            (name, str(len(body)).encode() if name == b"content-length" else value)
            for name, value in headers
        ]
    if extra and any(name == b"content-type" for name, _ in extra):
        first = headers.index((b"content-type", b"text/plain; charset=utf-8"))
        del headers[first]
    return await downstream.send_local_response(ResponseHead(status=status, headers=headers), text)


async def serve_service_request(
    plane: DataPlane,
    downstream: Downstream,
    head: RequestHead,
    *,
    config: ProxyConfig,
    cluster: Cluster,
    target: bytes,
    append_forwarded_for: bool,
) -> Result:
    """Route, protect and forward one request to ``cluster``'s service, answering the client."""

    async def attempt(
        endpoint: Endpoint,
        upstream_head: RequestHead,
        body: RequestBodySource | None,
        on_response: ResponseHook,
    ) -> Outcome:
        return await forward(
            plane=plane,
            downstream=downstream,
            head=upstream_head,
            target=upstream_head.target,
            destination=endpoint,
            cluster_name=cluster.name,
            limits=config.limits,
            append_forwarded_for=append_forwarded_for,
            body=body,
            on_response=on_response,
            answer_failures=False,
        )

    async def read_body() -> ReplayableBody:
        return await ReplayableBody.read_ahead(downstream)

    def mirror(endpoint: Endpoint, mirrored_head: RequestHead, body: bytes) -> bool:
        headers = rewrite_request_headers(
            mirrored_head.headers,
            client_address=downstream.peer_address,
            append_forwarded_for=append_forwarded_for,
            identity=downstream.identity,
            local_identity=plane.local_identity,
            chunked=False,
            edge_scheme=served_scheme(plane, downstream),
        )
        return plane.mirrors.offer(
            pool=plane.pool,
            tls=plane.tls,
            endpoint=endpoint,
            head=attrs.evolve(mirrored_head, headers=headers),
            body=body,
            limits=config.limits,
            open_ticket=plane.destinations.state(cluster.name).breaker.try_open_connection,
        )

    try:
        return await route_to_service(
            destinations=plane.destinations,
            config=config,
            cluster=cluster,
            head=head,
            target=target,
            attempt=attempt,
            reply=functools.partial(send_local_reply, downstream),
            read_body=read_body,
            mirror=mirror,
        )
    except ProtocolRefusal as refusal:
        await downstream.refuse(refusal.status, refusal.reason)
        return Result(status=refusal.status, flag="-", keep_alive=False)
