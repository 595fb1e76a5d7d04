"""What a sidecar applies: the ``ProxyConfig`` snapshot (Envoy's xDS, in small).

The control plane compiles one ``ProxyConfig`` per sidecar from the Meshfile and
the registry (``meshkit.registry.compile``) and serves it over the control API;
the sidecar applies it atomically.  A sidecar knows nothing else of the mesh.

Listener kinds:

* ``inbound``: traffic from other sidecars (or the gateway) to the local app at
  ``ProxyConfig.app``.
* ``outbound``: the local app's ``HTTP_PROXY``; the destination service is
  named by the request's Host (``http://catalog/items``), and must be a cluster.
* ``upstream``: a local port pinned to one cluster (``CATALOG_URL``); the Host
  header is left as the client sent it.
* ``gateway``: the mesh's edge; ``routes`` map path prefixes to clusters, the
  longest matching prefix wins.
* ``admin``: ``/metrics``, ``/config``, ``/ready``.

``port == 0`` means "let the operating system choose"; the sidecar reports the
ports it bound when it registers as ready.

Transport security: every connection to an ``Endpoint`` is mTLS (TLS 1.3,
the endpoint's ``identity`` checked after the handshake); ``inbound``
listeners require mTLS (``mtls == "strict"``) or also accept plaintext
(``"permissive"``); the other listeners are plaintext on 127.0.0.1, except a
gateway listener with ``tls=True`` (HTTPS for browsers and curl).
"""

from __future__ import annotations

from typing import Literal

import attrs

from meshkit.api import DestinationPolicy, RateLimit, RouteTable, RuntimeFault
from meshkit.api.authz import AuthzPolicy
from meshkit.api.jwt import JwtRule

ListenerKind = Literal["inbound", "outbound", "upstream", "gateway", "admin"]
MtlsMode = Literal["strict", "permissive"]
AppProtocol = Literal["http1", "http2"]


@attrs.frozen(kw_only=True)
class Endpoint:
    """One healthy instance of a cluster, reached at its sidecar's inbound port."""

    instance: str
    host: str
    port: int
    version: str | None = None
    # The SPIFFE ID the endpoint's sidecar must present (None: any mesh identity).
    identity: str | None = None
    # How often the supervisor restarted the instance: a new count is a new process,
    # which starts with a clean outlier record.
    restarts: int = 0


@attrs.frozen(kw_only=True)
class Cluster:
    """A destination service and its healthy endpoints (all versions)."""

    name: str
    endpoints: tuple[Endpoint, ...] = ()


@attrs.frozen(kw_only=True)
class PrefixRoute:
    """A gateway route: requests whose path starts with ``prefix`` go to ``cluster``."""

    prefix: str
    cluster: str


@attrs.frozen(kw_only=True)
class Listener:
    name: str
    kind: ListenerKind
    host: str = "127.0.0.1"
    port: int = 0
    cluster: str | None = None  # for kind == "upstream"
    routes: tuple[PrefixRoute, ...] = ()  # for kind == "gateway"
    # For kind == "gateway": serve HTTPS with the gateway's certificate for
    # localhost/127.0.0.1 (the sidecar asks the control plane for it).
    tls: bool = False


@attrs.frozen(kw_only=True)
class AppTarget:
    """Where the local app listens (inbound listeners forward here).

    ``protocol`` is what the app speaks: ``"http2"`` is h2c with prior
    knowledge (the Meshfile's ``protocol="http2"`` or ``"grpc"``).
    """

    host: str = "127.0.0.1"
    port: int = 0
    protocol: AppProtocol = "http1"


@attrs.frozen(kw_only=True)
class Limits:
    """Bounds on what a peer may make the sidecar hold or wait for (HARDENING.md)."""

    max_header_bytes: int = 60 * 1024
    max_header_count: int = 100
    header_timeout: float = 30.0
    idle_timeout: float = 300.0
    connect_timeout: float = 5.0
    max_body_bytes: int | None = None  # None: unbounded (streamed, never buffered)
    # Until the response starts, a request body may make us wait at most
    # body_timeout at a time, and body_timeout + 1 s per min_body_rate bytes in
    # all (policy/pace; Apache's body=20,MinRate=500); else 408.
    body_timeout: float = 30.0
    min_body_rate: float = 500.0
    # HTTP/2 streams in flight on one listener, all connections together (policy/admission).
    max_streams_per_listener: int = 1000
    pool_idle_per_endpoint: int = 64


@attrs.frozen(kw_only=True)
class ProxyConfig:
    version: int
    mesh: str
    instance: str
    service: str
    # The version of the service this sidecar serves (None: unversioned).
    service_version: str | None = None
    app: AppTarget | None = None
    listeners: tuple[Listener, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    limits: Limits = Limits()
    # The SPIFFE ID this sidecar's certificate carries ("" in configs without mTLS).
    identity: str = ""
    # Inbound listeners: "strict" accepts only mTLS, "permissive" plaintext too.
    mtls: MtlsMode = "strict"
    # L7 rules for every destination service of the mesh (``meshkit.api``):
    # each sidecar gets all of them, so a route change reaches every sidecar.
    routes: tuple[RouteTable, ...] = ()
    policies: tuple[DestinationPolicy, ...] = ()
    # Faults injected at runtime (``meshkit fault``, ``mesh.fault``), each with
    # its own wall-clock expiry; the sidecar ignores expired ones.
    runtime_faults: tuple[RuntimeFault, ...] = ()
    # Local rate limits of every service (the Meshfile's, runtime ones in their
    # place); the inbound sidecar enforces those of its own service.
    rate_limits: tuple[RateLimit, ...] = ()
    # Authorization policies of every service (``meshkit.api.authz``): an inbound
    # sidecar applies its service's, the gateway the client-address rules.
    authorization: tuple[AuthzPolicy, ...] = ()
    # JWT rules (``meshkit.api.jwt``): the gateway and inbound sidecars verify
    # a request's bearer token with them.
    request_authentication: tuple[JwtRule, ...] = ()
    # Names besides loopback that the gateway, upstream and admin listeners
    # answer as Host (``meshkit.proxy.policy.admission``): the mesh's service
    # names and the gateway's declared hosts.
    allowed_hosts: tuple[str, ...] = ()

    def cluster(self, name: str) -> Cluster | None:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        return None
