"""meshkit: a service mesh for a laptop and a test suite.

A ``Meshfile.py`` says::

    from meshkit import Mesh, http_get

    mesh = Mesh("shop")
    frontend = mesh.service("frontend", run="python -m shop.frontend", health=http_get("/healthz"))
    mesh.gateway(port=8080, routes={"/": frontend})
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshkit.dsl.spec import HealthCheck, RestartPolicy
    from meshkit.dsl.verbs.health import http_get, restart_policy, tcp_connect
    from meshkit.dsl.verbs.matchers import absent, prefix, present, regex
    from meshkit.dsl.verbs.mesh import Mesh, ServiceHandle
    from meshkit.dsl.verbs.resilience import breaker, outlier, retry_budget
    from meshkit.dsl.verbs.traffic import fault, headers, match, mirror, retry, split

# The Meshfile verbs are loaded on first use, so that a process that only
# needs one room (a sidecar: ``meshkit.proxy``) does not load the DSL too.
_HOMES = {
    "HealthCheck": "meshkit.dsl.spec",
    "RestartPolicy": "meshkit.dsl.spec",
    "http_get": "meshkit.dsl.verbs.health",
    "restart_policy": "meshkit.dsl.verbs.health",
    "tcp_connect": "meshkit.dsl.verbs.health",
    "absent": "meshkit.dsl.verbs.matchers",
    "prefix": "meshkit.dsl.verbs.matchers",
    "present": "meshkit.dsl.verbs.matchers",
    "regex": "meshkit.dsl.verbs.matchers",
    "Mesh": "meshkit.dsl.verbs.mesh",
    "ServiceHandle": "meshkit.dsl.verbs.mesh",
    "breaker": "meshkit.dsl.verbs.resilience",
    "outlier": "meshkit.dsl.verbs.resilience",
    "retry_budget": "meshkit.dsl.verbs.resilience",
    "fault": "meshkit.dsl.verbs.traffic",
    "headers": "meshkit.dsl.verbs.traffic",
    "match": "meshkit.dsl.verbs.traffic",
    "mirror": "meshkit.dsl.verbs.traffic",
    "retry": "meshkit.dsl.verbs.traffic",
    "split": "meshkit.dsl.verbs.traffic",
}

# Names of earlier Meshfile verbs, each with its successor, for a clear error.
_RENAMED = {
    "http": "http_get (a Meshfile's `import http.client` would shadow 'http')",
    "tcp": "tcp_connect",
    "restart": "restart_policy (and the keyword restart_policy=restart_policy(...))",
    "budget": "retry_budget",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        if name in _RENAMED:
            raise ImportError(f"meshkit: {name!r} is now {_RENAMED[name]}", name="meshkit")
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
    "fault",
    "headers",
    "http_get",
    "match",
    "mirror",
    "outlier",
    "prefix",
    "present",
    "regex",
    "restart_policy",
    "retry",
    "retry_budget",
    "split",
    "tcp_connect",
]
assert set(__all__) == set(_HOMES)
