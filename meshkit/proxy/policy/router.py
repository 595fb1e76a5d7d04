"""Where a request goes: pure decisions from a listener, a config and a request head.

No I/O and no event loop: ``route_request`` answers with a ``Forward`` (to the
local app or to a cluster) or a ``LocalReply`` the sidecar sends itself, with
a response flag naming which part of the mesh refused (as Envoy does):

* ``NR``: no route (unknown service, no gateway prefix matches);
* ``UH``: no healthy endpoint in the cluster;
* ``UF``: the endpoint could not be reached (decided by the forwarder).
"""

from __future__ import annotations

import attrs

from meshkit.proxy.codec.messages import RequestHead, header_value
from meshkit.proxy.config import AppTarget, Cluster, Listener, ProxyConfig

REASON_HEADER = b"x-meshkit-reason"
FLAG_HEADER = b"x-meshkit-flag"


@attrs.frozen(kw_only=True)
class ForwardToApp:
    app: AppTarget
    target: bytes


@attrs.frozen(kw_only=True)
class ForwardToCluster:
    cluster: Cluster
    target: bytes


@attrs.frozen(kw_only=True)
class ServeAdmin:
    path: bytes


@attrs.frozen(kw_only=True)
class LocalReply:
    status: int
    reason: str
    flag: str = "-"


@attrs.frozen(kw_only=True)
class OpenTunnel:
    """CONNECT to a mesh service: the tunnel is served as a connection of the listener."""

    service: str


Decision = ForwardToApp | ForwardToCluster | ServeAdmin | LocalReply


def split_target(target: bytes) -> tuple[bytes | None, bytes]:
    """``(authority or None, origin-form target)`` of a request target.

    ``http://catalog:8080/items?a=1`` -> ``(b"catalog:8080", b"/items?a=1")``;
    ``/items`` -> ``(None, b"/items")``.
    """
    scheme, sep, rest = target.partition(b"://")
    if not sep or b"/" in scheme:
        return None, target
    authority, slash, path = rest.partition(b"/")
    return authority, slash + path if slash else b"/"


def hostname(authority: bytes) -> str:
    """The host part of ``host[:port]``, lower-cased (``[v6]`` keeps its brackets)."""
    if authority.startswith(b"["):
        end = authority.find(b"]")
        return authority[: end + 1].decode("ascii", "replace").lower()
    return authority.partition(b":")[0].decode("ascii", "replace").lower()


def _to_cluster(config: ProxyConfig, service: str, target: bytes) -> Decision:
    cluster = config.cluster(service)
    if cluster is None:
        return LocalReply(
            status=404,
            reason=f"no service named '{service}' in mesh '{config.mesh}'",
            flag="NR",
        )
    if not cluster.endpoints:
        return LocalReply(
            status=503, reason=f"no healthy instance of service '{service}'", flag="UH"
        )
    return ForwardToCluster(cluster=cluster, target=target)


def longest_prefix_cluster(listener: Listener, path: bytes) -> str | None:
    """The cluster of the longest gateway route prefix that ``path`` starts with."""
    text = path.decode("ascii", "replace")
    best: tuple[int, str] | None = None
    for route in listener.routes:
        if text.startswith(route.prefix) and (best is None or len(route.prefix) > best[0]):
            best = (len(route.prefix), route.cluster)
    return None if best is None else best[1]


def route_connect(
    config: ProxyConfig, listener: Listener, head: RequestHead
) -> OpenTunnel | LocalReply:
    """``CONNECT host:port`` (a client honouring ``HTTP_PROXY``, as grpcio does): a tunnel
    on the outbound listener when ``host`` is a service of the mesh, else refused."""
    if listener.kind != "outbound":
        reason = "CONNECT is served only on the outbound listener (the apps' HTTP_PROXY)"
        return LocalReply(status=501, reason=reason, flag="NR")
    authority = head.target.decode("ascii", "replace")
    host, colon, port = authority.rpartition(":")
    if not colon or not host or not port.isdigit():
        reason = f"CONNECT target '{authority}' is not host:port"
        return LocalReply(status=400, reason=reason, flag="NR")
    service = hostname(head.target)
    if config.cluster(service) is None:
        reason = (
            f"CONNECT to '{authority}' refused: only services of mesh '{config.mesh}' are tunnelled"
        )
        return LocalReply(status=403, reason=reason, flag="NR")
    return OpenTunnel(service=service)


def route_request(config: ProxyConfig, listener: Listener, head: RequestHead) -> Decision:
    """Decide where ``head``, received on ``listener``, goes under ``config``."""
    if head.method == b"CONNECT":
        reason = "CONNECT is served only as HTTP/1.1 on the outbound listener"
        return LocalReply(status=501, reason=reason, flag="NR")
    authority, target = split_target(head.target)
    kind = listener.kind
    if kind == "admin":
        return ServeAdmin(path=target.partition(b"?")[0])
    if kind == "inbound":
        if config.app is None:
            return LocalReply(status=503, reason="this sidecar has no local app", flag="NR")
        return ForwardToApp(app=config.app, target=target)
    if kind == "upstream":
        if listener.cluster is None:
            return LocalReply(
                status=404, reason=f"listener '{listener.name}' has no cluster", flag="NR"
            )
        return _to_cluster(config, listener.cluster, target)
    if kind == "outbound":
        if authority is None:
            authority = header_value(head.headers, b"host")
        if not authority:
            return LocalReply(status=400, reason="no destination service in the request", flag="NR")
        return _to_cluster(config, hostname(authority), target)
    service = longest_prefix_cluster(listener, target.partition(b"?")[0])
    if service is None:
        path = target.partition(b"?")[0].decode("ascii", "replace")
        return LocalReply(status=404, reason=f"no gateway route matches '{path}'", flag="NR")
    return _to_cluster(config, service, target)
