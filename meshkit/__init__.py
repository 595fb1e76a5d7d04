"""meshkit: a service mesh for a laptop and a test suite.

A ``Meshfile.py`` says::

    from meshkit import Mesh, http

    mesh = Mesh("shop")
    frontend = mesh.service("frontend", run="python -m shop.frontend", health=http("/healthz"))
    mesh.gateway(port=8080, routes={"/": frontend})
"""

from meshkit.dsl.declare import Mesh, ServiceHandle, http, restart, tcp
from meshkit.dsl.resilience import breaker, budget, outlier
from meshkit.dsl.spec import HealthCheck, RestartPolicy
from meshkit.dsl.traffic import (
    absent,
    fault,
    headers,
    match,
    mirror,
    prefix,
    present,
    regex,
    retry,
    split,
)

__all__ = [
    "HealthCheck",
    "Mesh",
    "RestartPolicy",
    "ServiceHandle",
    "absent",
    "breaker",
    "budget",
    "fault",
    "headers",
    "http",
    "match",
    "mirror",
    "outlier",
    "prefix",
    "present",
    "regex",
    "restart",
    "retry",
    "split",
    "tcp",
]
