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

The ingress's own app (``python -m meshkit.runtime.ingress``) only anchors the
instance: it listens on ``$PORT`` so the default TCP health check passes, and
answers any request that reaches it with 404 and an explanation.
"""

from __future__ import annotations

import http.server
import os
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
        command=f"{shlex.quote(python)} -m meshkit.runtime.ingress",
        upstreams=tuple(names),
        health=HealthCheck(kind="tcp", period=0.2, timeout=1.0),
        origin=INGRESS_ORIGIN,
    )
    return attrs.evolve(spec, services=(*spec.services, ingress))


class _ExplainingHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with 404: nothing should call the ingress itself."""

    def _explain(self) -> None:
        body = (
            f"this is {INGRESS_SERVICE}, the test ingress of meshkit; it serves no requests. "
            "Use the ports listed under its upstream_ports in 'meshkit status'.\n"
        ).encode()
        self.send_response(404)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _explain

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {format % args}\n")


def main() -> int:
    port = int(os.environ.get("PORT", "0"))
    with http.server.HTTPServer(("127.0.0.1", port), _ExplainingHandler) as server:
        print(f"{INGRESS_SERVICE} listening on 127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
