"""meshkit: a service mesh for a laptop and a test suite.

A ``Meshfile.py`` says::

    from meshkit import Mesh, http

    mesh = Mesh("shop")
    frontend = mesh.service("frontend", run="python -m shop.frontend", health=http("/healthz"))
    mesh.gateway(port=8080, routes={"/": frontend})
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# The Meshfile verbs are loaded on first use, so that a process that only
# needs one room (a sidecar: ``meshkit.proxy``) does not load the DSL too.
_HOMES = {
    "Mesh": "meshkit.dsl.declare",
    "ServiceHandle": "meshkit.dsl.declare",
    "http": "meshkit.dsl.declare",
    "restart": "meshkit.dsl.declare",
    "tcp": "meshkit.dsl.declare",
    "breaker": "meshkit.dsl.resilience",
    "budget": "meshkit.dsl.resilience",
    "outlier": "meshkit.dsl.resilience",
    "HealthCheck": "meshkit.dsl.spec",
    "RestartPolicy": "meshkit.dsl.spec",
    "absent": "meshkit.dsl.traffic",
    "fault": "meshkit.dsl.traffic",
    "headers": "meshkit.dsl.traffic",
    "match": "meshkit.dsl.traffic",
    "mirror": "meshkit.dsl.traffic",
    "prefix": "meshkit.dsl.traffic",
    "present": "meshkit.dsl.traffic",
    "regex": "meshkit.dsl.traffic",
    "retry": "meshkit.dsl.traffic",
    "split": "meshkit.dsl.traffic",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'meshkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


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
assert set(__all__) == set(_HOMES)
