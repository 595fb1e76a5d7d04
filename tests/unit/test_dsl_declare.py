"""The Meshfile's verbs: origins, handles, and type mistakes turned into problems."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest

import meshkit
from meshkit import Mesh, ServiceHandle, http_get, restart_policy, tcp_connect
from meshkit.dsl.checks.problems import MeshfileError, Problem
from meshkit.dsl.spec import HealthCheck, RestartPolicy
from meshkit.dsl.verbs.collect import collecting

HERE = os.path.abspath(__file__)


def _line_of(marker: str) -> int:
    for number, text in enumerate(pathlib.Path(HERE).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)


def test_public_namespace_is_curated() -> None:
    assert set(meshkit.__all__) == {
        "HealthCheck",
        "Mesh",
        "RestartPolicy",
        "ServiceHandle",
        "absent",
        "breaker",
        "retry_budget",
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
        "split",
        "tcp_connect",
    }


def test_declarations_remember_the_calling_line() -> None:
    with collecting(HERE) as collector:
        mesh = Mesh("shop")  # mesh-line
        handle = mesh.service("frontend", run="serve")  # service-line
        mesh.gateway(port=0, routes={"/": handle})  # gateway-line
    (declared,) = collector.declarations().meshes
    assert declared.origin.line == _line_of("mesh-line")
    assert declared.origin.file == HERE
    assert declared.services[0].origin.line == _line_of("service-line")
    assert declared.gateways[0].origin.line == _line_of("gateway-line")
    assert handle == ServiceHandle(name="frontend", origin=declared.services[0].origin)


def test_handles_and_single_names_work_where_names_are_expected() -> None:
    with collecting(HERE) as collector:
        mesh = Mesh("shop")
        catalog = mesh.service("catalog", version="v1", run="c")
        mesh.service("db", run="d")
        mesh.service("frontend", run="f", depends_on="db", upstreams=[catalog, "catalog"])
        mesh.gateway(routes={"/": "frontend", "/api": catalog})
    (declared,) = collector.declarations().meshes
    frontend = declared.services[2]
    assert frontend.depends_on == ("db",)
    assert frontend.upstreams == ("catalog",)
    assert [(r.prefix, r.service) for r in declared.gateways[0].routes] == [
        ("/", "frontend"),
        ("/api", "catalog"),
    ]


def test_run_as_a_list_is_quoted_for_the_shell() -> None:
    with collecting(HERE) as collector:
        Mesh("shop").service("app", run=["python", "-c", "print('hi there')"])
    assert collector.declarations().meshes[0].services[0].command == (
        "python -c 'print('\"'\"'hi there'\"'\"')'"
    )


def test_health_checks_and_restart_policies() -> None:
    assert http_get("/healthz", period="250ms", timeout=2, failure_threshold=5) == HealthCheck(
        kind="http", path="/healthz", period=0.25, timeout=2.0, failure_threshold=5
    )
    assert tcp_connect(initial_delay="1.5m").kind == "tcp"
    assert tcp_connect(initial_delay="1.5m").initial_delay == 90.0
    assert restart_policy("on_failure", backoff="1s", max_backoff="1m") == RestartPolicy(
        mode="on_failure", backoff_initial=1.0, backoff_max=60.0, reset_after=10.0
    )


def test_restart_accepts_a_plain_mode_string() -> None:
    with collecting(HERE) as collector:
        Mesh("shop").service("app", run="a", restart_policy="no")
    assert collector.declarations().meshes[0].services[0].restart_policy == RestartPolicy(mode="no")


def test_relative_paths_are_resolved_against_the_meshfile_directory(tmp_path: pathlib.Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    with collecting(str(meshfile)) as collector:
        Mesh("shop").service("app", run="a", cwd="services/app", watch=["src", "/abs/x.py"])
    service = collector.declarations().meshes[0].services[0]
    assert service.cwd == str(tmp_path / "services" / "app")
    assert service.watch == (str(tmp_path / "src"), "/abs/x.py")


def _problems_of(collector_problems: tuple[Problem, ...]) -> list[tuple[int, str]]:
    return [(problem.line, problem.message) for problem in collector_problems]


def test_type_mistakes_become_problems_at_their_line() -> None:
    two: Any = "2"
    numbers: Any = {"A": 1}
    sometimes: Any = "sometimes"
    on_failure: Any = "on-failure"
    path: Any = "/healthz"
    with collecting(HERE) as collector:
        mesh = Mesh("shop")
        mesh.service("app", run="a", replicas=two, env=numbers)  # type-mistakes
        mesh.service("b", run="b", health=http_get(period="2 parsecs"))  # bad-duration
        mesh.service("c", run="c", restart_policy=sometimes)  # bad-mode
        restart_policy(on_failure)  # bad-restart-call
        mesh.service("d", run="d", health=path)  # health-string
    problems = _problems_of(collector.declarations().problems)
    assert problems == [
        (_line_of("type-mistakes"), "service 'app': replicas must be an int, got '2' (a str)"),
        (
            _line_of("type-mistakes"),
            "service 'app': env 'A' must be a string, got 1 (a int) (write '1' if that is "
            "what you mean)",
        ),
        (
            _line_of("bad-duration"),
            "http_get(...): period: '2 parsecs' is not a duration (use a number of seconds or a "
            'string like "250ms", "2s", "1.5m", "1h")',
        ),
        (
            _line_of("bad-mode"),
            "service 'c': restart_policy 'sometimes' is not one of 'no', 'on_failure', 'always'",
        ),
        (
            _line_of("bad-restart-call"),
            "restart_policy(...): mode 'on-failure' is not one of 'no', 'on_failure', 'always' "
            "(did you mean 'on_failure'?)",
        ),
        (
            _line_of("health-string"),
            "service 'd': health must be http_get(...) or tcp_connect(...), got '/healthz' (a str) "
            "(did you mean health=http_get('/healthz')?)",
        ),
    ]


def test_outside_an_evaluation_a_mistake_raises_at_once() -> None:
    mesh = Mesh("shop")
    with pytest.raises(MeshfileError, match=r"test_dsl_declare.py:\d+: service 'app': replicas"):
        mesh.service("app", run="a", replicas="2")  # type: ignore[arg-type]
    with pytest.raises(MeshfileError, match="is not a duration"):
        http_get(timeout="soon")
