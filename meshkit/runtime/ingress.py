"""The test ingress: how a test process reaches every service through the mesh.

In strict mTLS a test cannot talk plaintext to a service's inbound port, and
the gateway only reaches the services the Meshfile routes there.  Rather than
a new kind of proxy, the test ingress is one more *service* of the mesh,
``meshkit-ingress``, that declares every other service as an upstream.  The
mechanisms that already exist then do all the work: its sidecar gets a
certificate for ``spiffe://meshkit.local/ns/<mesh>/sa/meshkit-ingress`` and one
plaintext loopback port per upstream (``upstream_ports`` in ``meshkit status``),
and a request to such a port crosses the mesh as any service-to-service call
does: load balancing over healthy endpoints, mTLS, the destination's sidecar.

The ingress's own app (``python -m meshkit.runtime.ingress_app``, a module of
its own so that the control plane does not import ``http.server``) only anchors
the instance: it listens on ``$PORT`` so the default TCP health check passes,
and answers any request that reaches it with 404 and an explanation.
"""

from __future__ import annotations

import shlex
import sys

import attrs

from meshkit.dsl.spec import HealthCheck, MeshSpec, Origin, ServiceSpec

INGRESS_SERVICE = "meshkit-ingress"
INGRESS_ORIGIN = Origin(file="<meshkit up --ingress>", line=0)


class IngressError(Exception):
    """The test ingress cannot be added to this spec."""


def with_test_ingress(spec: MeshSpec, *, python: str = sys.executable) -> MeshSpec:
    """``spec`` plus the ``meshkit-ingress`` service, upstream of every service in it."""
    names = spec.service_names()
    if INGRESS_SERVICE in names:
        raise IngressError(
            f"the Meshfile declares a service called {INGRESS_SERVICE!r}, the name the "
            "test ingress needs; rename that service"
        )
    ingress = ServiceSpec(
        name=INGRESS_SERVICE,
        command=f"{shlex.quote(python)} -m meshkit.runtime.ingress_app",
        upstreams=tuple(names),
        health=HealthCheck(kind="tcp", period=0.2, timeout=1.0),
        origin=INGRESS_ORIGIN,
    )
    return attrs.evolve(spec, services=(*spec.services, ingress))
