"""Listeners and the per-connection loop of a sidecar.

One task per accepted connection, owned by the sidecar's connection nursery;
each handles its requests one after another (HTTP/1.1 keep-alive), reading
the current config snapshot once per request.  Inbound connections first pass
``accept_inbound`` (mTLS), a gateway listener with ``tls`` the HTTPS
handshake, both within ``header_timeout``.
"""

from __future__ import annotations

import logging
import time

import trio

from meshkit.ca.spiffe import mesh_peer_problem
from meshkit.proxy.codec.messages import RequestHead, header_value
from meshkit.proxy.codec.request_rules import MESH_HEADER_ALLOWANCE, speaks_http1
from meshkit.proxy.config import Endpoint, Listener, ListenerKind, ProxyConfig
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.flow.downstream import Http1Downstream
from meshkit.proxy.flow.exchange import Client, Downstream, DownstreamGone
from meshkit.proxy.flow.forward import forward
from meshkit.proxy.flow.h2downstream import (
    ReplayedStream,
    is_http2,
    read_preface,
    serve_http2,
)
from meshkit.proxy.flow.l7 import serve_service_request
from meshkit.proxy.flow.ratelimited import refuse_over_limit
from meshkit.proxy.net.peercred import foreign_owner
from meshkit.proxy.net.tlsstream import TlsStream
from meshkit.proxy.net.transport import InboundRefused, accept_https, accept_inbound
from meshkit.proxy.policy.authz import GATEWAY_SERVICE, Denied, check_request
from meshkit.proxy.policy.flags import OVERFLOW
from meshkit.proxy.policy.grpcreply import is_grpc
from meshkit.proxy.policy.local_access import admit
from meshkit.proxy.policy.router import (
    Decision,
    ForwardToApp,
    ForwardToCluster,
    LocalReply,
    OpenTunnel,
    ServeAdmin,
    route_connect,
    route_request,
)
from meshkit.proxy.telemetry.admin import answer_admin
from meshkit.proxy.telemetry.tracing import OpenSpan, SpanKind

log = logging.getLogger("meshkit.proxy")

ENTRY_KINDS = frozenset({"outbound", "upstream", "gateway"})
# Only the mesh's user may connect (``proxy.net.peercred``); the gateway is the front door.
SAME_USER_KINDS = frozenset({"outbound", "upstream", "admin"})


def _peer_address(stream: trio.abc.Stream) -> str | None:
    if isinstance(stream, trio.SocketStream):
        try:
            address = stream.socket.getpeername()
        except OSError:
            return None
        if isinstance(address, tuple):
            return str(address[0])
    return None


async def _accept_https(plane: DataPlane, raw_stream: trio.abc.Stream) -> trio.abc.Stream:
    if plane.gateway_tls is None:
        raise InboundRefused("the gateway has no HTTPS certificate yet")
    return await accept_https(raw_stream, plane.gateway_tls)


def _members(config: ProxyConfig) -> set[str]:
    """The services whose identity may call this sidecar: the mesh's, and its gateway."""
    return {cluster.name for cluster in config.clusters} | {GATEWAY_SERVICE}


async def _handshake(
    plane: DataPlane, config: ProxyConfig, listener: Listener, raw_stream: trio.abc.Stream
) -> tuple[trio.abc.Stream, str | None] | None:
    """The stream to serve and the peer's identity; None when the connection is refused.

    Inbound connections pass ``accept_inbound`` (mTLS), a gateway listener with
    ``tls`` the HTTPS handshake, both within ``header_timeout``.
    """
    if listener.kind != "inbound" and not listener.tls:
        return raw_stream, None
    timeout = config.limits.header_timeout
    with trio.move_on_after(timeout):
        try:
            if listener.kind == "inbound":
                return await accept_inbound(
                    raw_stream,
                    tls=plane.tls,
                    mode=config.mtls,
                    member_problem=lambda identity: mesh_peer_problem(
                        identity, mesh=config.mesh, services=_members(config)
                    ),
                )
            return await _accept_https(plane, raw_stream), None
        except InboundRefused as refused:
            peer = _peer_address(raw_stream) or "?"
            log.info("%s: refused a connection from %s: %s", listener.name, peer, refused.reason)
            return None
    log.info("%s: closed a connection whose TLS handshake took over %gs", listener.name, timeout)
    return None


async def handle_connection(
    plane: DataPlane, listener_name: str, raw_stream: trio.abc.Stream
) -> None:
    """Serve every request of one accepted connection, then close it."""
    config = plane.config
    listener = None if config is None else plane.listener(config, listener_name)
    secured = None
    if config is not None and listener is not None:
        refused = foreign_owner(raw_stream) if listener.kind in SAME_USER_KINDS else None
        if refused is not None:
            log.warning("%s: refused: %s", listener_name, refused)
        else:
            secured = await _handshake(plane, config, listener, raw_stream)
    if config is None or secured is None:
        await trio.aclose_forcefully(raw_stream)
        return
    stream, identity = secured
    plane.metrics.connection_opened(listener_name)
    try:
        async with stream:
            client = Client(listener_name, config.limits, _peer_address(raw_stream), identity)
            inbound = listener is not None and listener.kind == "inbound"
            await _serve_stream(plane, client, stream, from_sidecar=inbound)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        plane.metrics.connection_closed(listener_name)


async def _serve_stream(
    plane: DataPlane, client: Client, stream: trio.abc.Stream, *, from_sidecar: bool = False
) -> None:
    """HTTP/2 or HTTP/1.1, whichever the client's first bytes speak, on ``stream``."""
    first_bytes = b""
    if _selected_alpn(stream) != "h2":
        with trio.move_on_after(client.limits.header_timeout) as sniffing:
            first_bytes = await read_preface(stream)
        if not first_bytes and not sniffing.cancelled_caught:
            return
        if not is_http2(first_bytes) and not speaks_http1(first_bytes):
            return  # h2spec 3.5/2: an invalid preface ends the connection
    if _selected_alpn(stream) == "h2" or is_http2(first_bytes):
        await serve_http2(
            plane,
            transport=ReplayedStream(stream, first_bytes),
            client=client,
            handle_request=handle_request,
            header_allowance=MESH_HEADER_ALLOWANCE if from_sidecar else 0,
        )
        return
    downstream = Http1Downstream(stream=stream, plane=plane, client=client)
    await _serve_http1(plane, downstream, first_bytes)


async def _serve_tunnel(plane: DataPlane, downstream: Http1Downstream, head: RequestHead) -> None:
    """CONNECT to a mesh service (outbound listener): ``200``, then the tunnel served as a
    connection of that listener (HTTP/1.1 or h2c inside); anything else refused."""
    started = trio.current_time()
    config = plane.config
    listener = None if config is None else plane.listener(config, downstream.listener_name)
    decision: OpenTunnel | LocalReply = (
        LocalReply(status=503, reason="the listener was removed by a config update", flag="NR")
        if config is None or listener is None
        else route_connect(config, listener, head)
    )
    if isinstance(decision, LocalReply):
        await downstream.refuse(decision.status, decision.reason, flag=decision.flag)
        plane.log_access(head, status=decision.status, started=started, flag=decision.flag)
        return
    await downstream.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
    plane.log_access(head, status=200, started=started, flag="-", upstream=decision.service)
    tunnel = ReplayedStream(downstream.stream, downstream.codec.take_tunnel_bytes())
    await _serve_stream(plane, downstream.client, tunnel)


async def _serve_http1(plane: DataPlane, downstream: Http1Downstream, first_bytes: bytes) -> None:
    """The requests of one HTTP/1.1 connection, one after another (keep-alive)."""
    if not first_bytes:
        timeout = downstream.limits.header_timeout
        await downstream.refuse(408, f"request head not received within {timeout:g}s")
        return
    downstream.codec.receive_data(first_bytes)
    first = True
    while True:
        head = await downstream.read_head(first=first)
        if head is None:
            return
        first = False
        if head.method == b"CONNECT":
            await _serve_tunnel(plane, downstream, head)
            return
        admission = plane.admission(downstream.listener_name)
        limit = downstream.limits.max_streams_per_listener
        if not admission.try_admit(downstream, limit=limit):
            reason = f"{limit} requests in flight on this listener (max_streams_per_listener)"
            await downstream.refuse(503, reason, flag=OVERFLOW)
            plane.log_access(head, status=503, started=trio.current_time(), flag=OVERFLOW)
            return
        try:
            keep_alive = await handle_request(plane, downstream, head)
        except DownstreamGone:
            return
        finally:
            admission.release(downstream)
        if not keep_alive or plane.draining or not downstream.codec.finish_cycle():
            return


def _selected_alpn(stream: trio.abc.Stream) -> str | None:
    return stream.selected_alpn_protocol() if isinstance(stream, TlsStream) else None


async def handle_request(plane: DataPlane, downstream: Downstream, head: RequestHead) -> bool:
    """Answer one request (HTTP/1.1, or one HTTP/2 stream); True when the connection may
    carry another."""
    started = trio.current_time()
    body_bytes_before, sent_bytes_before = downstream.body_bytes, downstream.sent_bytes
    config = plane.config
    listener = None if config is None else plane.listener(config, downstream.listener_name)
    downstream.grpc = is_grpc(head.headers)
    cluster_label = "-"
    # The destination service and endpoint of a request to a service (Istio's metrics).
    service: str | None = None
    upstream: Endpoint | None = None
    span: OpenSpan | None = None
    if config is None or listener is None:
        reason = f"listener '{downstream.listener_name}' was removed by a config update"
        await downstream.reply(503, (reason + "\n").encode(), reason=reason, flag="NR")
        status, flag, keep = 503, "NR", False
    else:
        if listener.kind != "admin":
            kind: SpanKind = "server" if listener.kind == "inbound" else "client"
            span, head = plane.tracer.begin(head, kind=kind)
        decision = admit(config, listener, head, admin_token=plane.admin_token) or route_request(
            config, listener, head
        )
        denied = _denied(config, listener, downstream, head, decision)
        if denied is not None:
            status, flag = denied.status, denied.flag
            keep = await downstream.reply(
                status, (denied.reason + "\n").encode(), reason=denied.reason, flag=flag
            )
            if isinstance(decision, ForwardToApp):
                service = config.service
        elif isinstance(decision, LocalReply):
            status, flag = decision.status, decision.flag
            keep = await downstream.reply(
                status, (decision.reason + "\n").encode(), reason=decision.reason, flag=flag
            )
        elif isinstance(decision, ServeAdmin):
            answer = answer_admin(
                decision.path,
                config=config,
                ready=plane.ready,
                metrics=plane.metrics,
                calls=plane.calls,
                method=head.method,
                query=head.target.partition(b"?")[2],
            )
            status, flag = answer.status, "-"
            keep = await downstream.reply(status, answer.body, content_type=answer.content_type)
        elif isinstance(decision, ForwardToCluster):
            # Outbound, upstream and gateway: the service's L7 rules and resilience.
            cluster_label = decision.cluster.name
            result = await serve_service_request(
                plane,
                downstream,
                head,
                config=config,
                cluster=decision.cluster,
                target=decision.target,
                append_forwarded_for=listener.kind in ENTRY_KINDS,
            )
            status, flag, keep = result.status, result.flag, result.keep_alive
            service, upstream = decision.cluster.name, result.upstream
        elif (limited := await refuse_over_limit(plane, downstream, config, head)) is not None:
            cluster_label = f"{config.service} (local app)"
            status, flag, keep = limited.status, limited.flag, limited.keep_alive
            service = config.service
        else:
            # Inbound: the caller's sidecar applied the rules; straight to the local app.
            cluster_label = f"{config.service} (local app)"
            outcome = await forward(
                plane=plane,
                downstream=downstream,
                head=head,
                target=decision.target,
                destination=decision.app,
                cluster_name=cluster_label,
                limits=config.limits,
                append_forwarded_for=listener.kind in ENTRY_KINDS,
            )
            status, flag, keep = outcome.status, outcome.flag, outcome.keep_alive
            service = config.service
    plane.metrics.record_request(
        listener=downstream.listener_name, cluster=cluster_label, status=status
    )
    if config is not None and listener is not None:
        _record_telemetry(
            plane,
            config,
            listener.kind,
            downstream,
            head,
            span=span,
            service=service,
            upstream=upstream,
            status=status,
            flag=flag,
            duration_ms=(trio.current_time() - started) * 1000,
            request_bytes=downstream.body_bytes - body_bytes_before,
            response_bytes=downstream.sent_bytes - sent_bytes_before,
        )
    plane.log_access(
        head,
        status=status,
        started=started,
        flag=flag,
        upstream=None if upstream is None else upstream.instance,
        bytes_in=downstream.body_bytes - body_bytes_before,
        bytes_out=downstream.sent_bytes - sent_bytes_before,
        trace_id=None if span is None else span.trace_id,
    )
    if listener is not None and listener.kind == "inbound":
        plane.record_call(
            head, status=status, started=started, flag=flag, caller=downstream.identity
        )
    return keep


def _denied(
    config: ProxyConfig,
    listener: Listener,
    downstream: Downstream,
    head: RequestHead,
    decision: Decision,
) -> Denied | None:
    """The authorization refusal of a request to the local app, or through the gateway."""
    if isinstance(decision, ForwardToApp):
        service, at_gateway = config.service, False
    elif isinstance(decision, ForwardToCluster) and listener.kind == "gateway":
        service, at_gateway = decision.cluster.name, True
    else:
        return None
    return check_request(
        config,
        service=service,
        at_gateway=at_gateway,
        method=head.method,
        target=decision.target,
        headers=head.headers,
        identity=downstream.identity,
        client_address=downstream.peer_address,
        now=time.time(),
    )


def _record_telemetry(
    plane: DataPlane,
    config: ProxyConfig,
    kind: ListenerKind,
    downstream: Downstream,
    head: RequestHead,
    *,
    span: OpenSpan | None,
    service: str | None,
    upstream: Endpoint | None,
    status: int,
    flag: str,
    duration_ms: float,
    request_bytes: int,
    response_bytes: int,
) -> None:
    """Istio's metrics (requests to a service) and this hop's span, once it is answered."""
    if service is not None:
        plane.metrics.record_istio(
            config,
            kind=kind,
            peer=downstream.identity,
            cluster=service,
            upstream=upstream,
            content_type=header_value(head.headers, b"content-type"),
            status=status,
            flag=flag,
            duration_ms=duration_ms,
            request_bytes=request_bytes,
            response_bytes=response_bytes,
        )
    if span is not None:
        if span.kind == "server":
            where = "local app"
        else:
            where = upstream.instance if upstream is not None else (service or "-")
        plane.tracer.finish(
            span,
            service=config.service,
            instance=config.instance,
            method=head.method,
            target=head.target,
            upstream=where,
            status=status,
            flag=flag,
            duration_ms=duration_ms,
        )


async def serve_listener(
    plane: DataPlane,
    listener_name: str,
    listeners: list[trio.SocketListener],
    connection_nursery: trio.Nursery,
) -> None:
    """Accept on ``listeners`` until cancelled; connections live in ``connection_nursery``.

    Cancelling this task closes the listening sockets but not the connections,
    so in-flight requests finish (graceful shutdown, listener removal).
    """

    async def handler(stream: trio.abc.Stream) -> None:
        await handle_connection(plane, listener_name, stream)

    await trio.serve_listeners(handler, listeners, handler_nursery=connection_nursery)
