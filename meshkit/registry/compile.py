"""The compile step: MeshSpec + registry state -> one ProxyConfig per sidecar.

A pure function.  Its output follows the listener contract every sidecar
relies on:

* an app instance's sidecar gets ``inbound`` (to its app), ``outbound`` (the
  app's ``HTTP_PROXY``), one ``upstream:<service>`` per declared upstream and
  ``admin``, all on port 0 of 127.0.0.1;
* the gateway sidecar (instance ``gateway``) gets ``gateway`` (host and port
  from the Meshfile, routes longest prefix first) and ``admin``;
* every sidecar gets one cluster per service of the mesh, whose endpoints are
  the *healthy* instances of any version, at their sidecar's inbound port;
* identities: each config names its sidecar's SPIFFE ID
  (``spiffe://meshkit.local/ns/<mesh>/sa/<service>``, the gateway's service
  being ``gateway``) and the mesh's ``mtls`` mode, and each endpoint the
  identity its sidecar must present;
* every sidecar gets the route table and destination policy of every service
  (``meshkit.registry.routes``), so a route change reaches all of them;
* a gateway with ``tls_port`` gets a second listener, ``gateway-tls`` (HTTPS,
  same routes);
* every sidecar gets the authorization policies of every service
  (``meshkit.registry.authz``), applied like routes;
* every sidecar gets the runtime faults of the registry that have not expired
  at ``now`` (the wall clock by default), since faults apply on the caller side,
  and the rate limits of every service (``meshkit.registry.limits``).

Versions: a config keeps the version the registry already holds when nothing
else in it changed, and gets that version + 1 otherwise, so publishing the
result wakes only the sidecars with something new to apply.
"""

from __future__ import annotations

import time

import attrs

from meshkit.api import DestinationPolicy, RateLimit, RouteTable, RuntimeFault
from meshkit.api.authz import AuthzPolicy
from meshkit.api.jwt import JwtRule
from meshkit.ca.spiffe import spiffe_id
from meshkit.dsl.spec import GatewaySpec, MeshSpec, MtlsMode, ServiceSpec
from meshkit.proxy.config import (
    AppTarget,
    Cluster,
    Endpoint,
    Listener,
    PrefixRoute,
    ProxyConfig,
)
from meshkit.registry.authz import authorization_policies, jwt_rules
from meshkit.registry.faults import runtime_faults
from meshkit.registry.limits import declared_limits, effective_limits
from meshkit.registry.routes import destination_policies, route_tables
from meshkit.registry.state import GATEWAY_INSTANCE, InstanceRecord, Registry

LOOPBACK = "127.0.0.1"
GATEWAY_TLS_LISTENER = "gateway-tls"


def compile_configs(
    spec: MeshSpec, registry: Registry, *, now: float | None = None
) -> dict[str, ProxyConfig]:
    """One config per instance in ``registry``, keyed by instance id.

    ``now`` (epoch seconds, default the wall clock) decides which runtime
    faults have expired.
    """
    now = time.time() if now is None else now
    shared = _Shared(
        mesh=spec.name,
        mtls=spec.mtls,
        clusters=_clusters(spec, registry),
        routes=route_tables(spec),
        policies=destination_policies(spec),
        runtime_faults=runtime_faults(registry.faults, now),
        rate_limits=effective_limits(declared_limits(spec), registry.limits, now),
        authorization=authorization_policies(spec),
        request_authentication=jwt_rules(spec),
        allowed_hosts=_allowed_hosts(spec),
    )
    deployments = {svc.key: svc for svc in spec.services}
    configs: dict[str, ProxyConfig] = {}
    for record in registry.instances():
        if record.kind == "gateway":
            if spec.gateway is None:
                continue
            fresh = _gateway_config(spec.gateway, shared)
        else:
            deployment = _deployment_of(record, deployments)
            if deployment is None:
                continue
            fresh = _app_config(deployment, record, shared)
        configs[record.id] = _versioned(fresh, registry.config_of(record.id))
    return configs


@attrs.frozen(kw_only=True)
class _Shared:
    """What every sidecar of the mesh gets alike: clusters, route tables, policies, ..."""

    mesh: str
    mtls: MtlsMode
    clusters: tuple[Cluster, ...]
    routes: tuple[RouteTable, ...]
    policies: tuple[DestinationPolicy, ...]
    runtime_faults: tuple[RuntimeFault, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()
    authorization: tuple[AuthzPolicy, ...] = ()
    request_authentication: tuple[JwtRule, ...] = ()
    allowed_hosts: tuple[str, ...] = ()

    def config(
        self,
        *,
        instance: str,
        service: str,
        service_version: str | None = None,
        app: AppTarget | None,
        listeners: list[Listener],
    ) -> ProxyConfig:
        """The config of one instance's sidecar (version 0: ``_versioned`` numbers it)."""
        return ProxyConfig(
            version=0,
            mesh=self.mesh,
            instance=instance,
            service=service,
            service_version=service_version,
            app=app,
            listeners=tuple(listeners),
            clusters=self.clusters,
            identity=spiffe_id(self.mesh, service),
            mtls=self.mtls,
            routes=self.routes,
            policies=self.policies,
            runtime_faults=self.runtime_faults,
            rate_limits=self.rate_limits,
            authorization=self.authorization,
            request_authentication=self.request_authentication,
            allowed_hosts=self.allowed_hosts,
        )


def _allowed_hosts(spec: MeshSpec) -> tuple[str, ...]:
    """The Host names besides loopback the mesh answers: its services, the gateway's hosts."""
    declared = () if spec.gateway is None else spec.gateway.hosts
    return tuple(dict.fromkeys((*spec.service_names(), *declared)))


def deployment_key(service: str, version: str | None) -> str:
    return service if version is None else f"{service}-{version}"


def _deployment_of(
    record: InstanceRecord, deployments: dict[str, ServiceSpec]
) -> ServiceSpec | None:
    return deployments.get(deployment_key(record.service, record.version))


def _clusters(spec: MeshSpec, registry: Registry) -> tuple[Cluster, ...]:
    clusters = []
    for name in spec.service_names():
        endpoints = tuple(
            Endpoint(
                instance=rec.id,
                host=LOOPBACK,
                port=rec.inbound_port,
                version=rec.version,
                identity=spiffe_id(spec.name, name),
                restarts=rec.restarts,
            )
            for rec in sorted(registry.healthy_instances_of(name), key=lambda r: r.id)
            if rec.inbound_port is not None
        )
        clusters.append(Cluster(name=name, endpoints=endpoints))
    return tuple(clusters)


def _app_config(deployment: ServiceSpec, record: InstanceRecord, shared: _Shared) -> ProxyConfig:
    listeners = [
        Listener(name="inbound", kind="inbound"),
        Listener(name="outbound", kind="outbound"),
        *(
            Listener(name=f"upstream:{upstream}", kind="upstream", cluster=upstream)
            for upstream in deployment.upstreams
        ),
        Listener(name="admin", kind="admin"),
    ]
    return shared.config(
        instance=record.id,
        service=record.service,
        service_version=record.version,
        app=AppTarget(
            host=LOOPBACK,
            port=record.port or 0,
            protocol="http1" if deployment.protocol == "http1" else "http2",
        ),
        listeners=listeners,
    )


def _gateway_config(gateway: GatewaySpec, shared: _Shared) -> ProxyConfig:
    routes = tuple(
        PrefixRoute(prefix=route.prefix, cluster=route.service)
        for route in sorted(gateway.routes, key=lambda r: len(r.prefix), reverse=True)
    )
    listeners = [
        Listener(
            name="gateway", kind="gateway", host=gateway.host, port=gateway.port, routes=routes
        ),
    ]
    if gateway.tls_port is not None:
        listeners.append(
            Listener(
                name=GATEWAY_TLS_LISTENER,
                kind="gateway",
                host=gateway.host,
                port=gateway.tls_port,
                routes=routes,
                tls=True,
            )
        )
    listeners.append(Listener(name="admin", kind="admin"))
    return shared.config(
        instance=GATEWAY_INSTANCE, service=GATEWAY_INSTANCE, app=None, listeners=listeners
    )


def _versioned(fresh: ProxyConfig, current: ProxyConfig | None) -> ProxyConfig:
    if current is None:
        return attrs.evolve(fresh, version=1)
    if attrs.evolve(current, version=0) == fresh:
        return current
    return attrs.evolve(fresh, version=current.version + 1)
