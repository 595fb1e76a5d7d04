"""The Meshfile DSL: its verbs, its spec, its evaluation and validation.

``evaluate(path)`` turns a Meshfile into an ``EvalResult`` (a validated
``MeshSpec`` or the ``Problem``s, each ``FILE:LINE: message``).
"""

from meshkit.dsl.checks.problems import MeshfileError, Problem
from meshkit.dsl.evaluate.evaluation import (
    EvalResult,
    MeshfileNotFound,
    evaluate,
    evaluate_async,
    evaluate_in_process,
    find_meshfile,
)
from meshkit.dsl.spec import MeshSpec
from meshkit.dsl.verbs.health import http_get, restart_policy, tcp_connect
from meshkit.dsl.verbs.mesh import Mesh, ServiceHandle

__all__ = [
    "EvalResult",
    "Mesh",
    "MeshSpec",
    "MeshfileError",
    "MeshfileNotFound",
    "Problem",
    "ServiceHandle",
    "evaluate",
    "evaluate_async",
    "evaluate_in_process",
    "find_meshfile",
    "http_get",
    "restart_policy",
    "tcp_connect",
]
