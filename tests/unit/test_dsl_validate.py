"""Validation: every rule, with the exact ``FILE:LINE: message`` a user sees."""

from __future__ import annotations

import os
import pathlib

import pytest

from meshkit.dsl import evaluate_in_process
from meshkit.dsl.checks.validate import is_dns_label, validate
from meshkit.dsl.spec import Origin, ServiceSpec
from meshkit.dsl.verbs.collect import Declarations, MeshDeclaration

HEADER = "from meshkit import Mesh, http_get, tcp_connect, restart_policy\nmesh = Mesh('shop')\n"
"""Two lines: a Meshfile body written after it starts at line 3."""


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems_of(directory: pathlib.Path, body: str, *, header: str = HEADER) -> list[str]:
    (directory / "Meshfile.py").write_text(header + body)
    result = evaluate_in_process("Meshfile.py")
    assert result.spec is None
    assert not result.ok
    return [str(problem) for problem in result.problems]


def test_unknown_upstream_with_a_hint(in_tmp: pathlib.Path) -> None:
    body = (
        "mesh.service('catalog', run='c')\n"
        "mesh.service('frontend', run='f',\n"
        "             upstreams=['catalogue'], depends_on=['zzz'])\n"
    )
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:4: service 'frontend': depends_on 'zzz' is not a service in this mesh",
        "Meshfile.py:4: service 'frontend': upstream 'catalogue' is not a service in this mesh"
        " (did you mean 'catalog'?)",
    ]


def test_unknown_gateway_route_and_bad_prefix(in_tmp: pathlib.Path) -> None:
    body = "mesh.service('frontend', run='f')\nmesh.gateway(routes={'api': 'frontnd'})\n"
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:4: gateway: route prefix 'api' must start with '/' (did you mean '/api'?)",
        "Meshfile.py:4: gateway: route 'api' sends traffic to 'frontnd', which is not a service"
        " in this mesh (did you mean 'frontend'?)",
    ]


def test_default_gateway_route_needs_a_frontend(in_tmp: pathlib.Path) -> None:
    body = "mesh.service('web', run='w')\nmesh.gateway()\n"
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:4: gateway: route '/' sends traffic to 'frontend', which is not a service"
        " in this mesh",
    ]


def test_duplicates_and_mixed_versions(in_tmp: pathlib.Path) -> None:
    body = (
        "mesh.service('catalog', version='v1', run='c')\n"
        "mesh.service('catalog', version='v1', run='c')\n"
        "mesh.service('catalog', run='c')\n"
    )
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:4: service 'catalog' version 'v1' is declared twice (first at line 3);"
        " give each deployment its own version",
        "Meshfile.py:5: service 'catalog' is declared both with and without a version"
        " (also at line 3); either every deployment of a service has a version or there is"
        " only one",
    ]


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("Catalog", " (did you mean 'catalog'?)"),
        ("catalog_api", " (did you mean 'catalog-api'?)"),
        ("-catalog", " (did you mean 'catalog'?)"),
        ("a" * 64, ""),
        ("", ""),
    ],
)
def test_service_names_must_be_dns_labels(in_tmp: pathlib.Path, name: str, hint: str) -> None:
    body = f"mesh.service({name!r}, run='x')\n"
    (problem,) = problems_of(in_tmp, body)
    assert problem == (
        f"Meshfile.py:3: service {name!r}: service name {name!r} is not a valid name: use"
        " lowercase letters, digits and '-', starting and ending with a letter or digit, at"
        f" most 63 characters{hint}"
    )


def test_versions_and_mesh_names_must_be_dns_labels(in_tmp: pathlib.Path) -> None:
    header = "from meshkit import Mesh\nmesh = Mesh('My Shop')\n"
    problems = problems_of(
        in_tmp, "mesh.service('catalog', version='V1.0', run='c')\n", header=header
    )
    assert [p.split(" is not a valid name")[0] for p in problems] == [
        "Meshfile.py:2: mesh name 'My Shop'",
        "Meshfile.py:3: service 'catalog' version 'V1.0': version 'V1.0'",
    ]


def test_dns_labels() -> None:
    assert is_dns_label("a")
    assert is_dns_label("catalog-v2")
    assert is_dns_label("a" * 63)
    assert not is_dns_label("a" * 64)
    assert not is_dns_label("catalog-")
    assert not is_dns_label("cat.alog")


@pytest.mark.parametrize("port", [-1, 65536, 100000])
def test_gateway_port_range(in_tmp: pathlib.Path, port: int) -> None:
    body = f"mesh.service('frontend', run='f')\nmesh.gateway(port={port})\n"
    assert problems_of(in_tmp, body) == [
        f"Meshfile.py:4: gateway: port {port} is not a TCP port (0..65535; 0 lets the system"
        " choose)",
    ]


def test_gateway_port_zero_and_max_are_fine(in_tmp: pathlib.Path) -> None:
    (in_tmp / "Meshfile.py").write_text(
        HEADER + "mesh.service('frontend', run='f')\nmesh.gateway(port=65535)\n"
    )
    assert evaluate_in_process("Meshfile.py").ok


def test_replicas_must_be_positive(in_tmp: pathlib.Path) -> None:
    assert problems_of(in_tmp, "mesh.service('app', run='a', replicas=0)\n") == [
        "Meshfile.py:3: service 'app': replicas must be at least 1, got 0",
    ]


def test_depends_on_cycle_names_the_cycle(in_tmp: pathlib.Path) -> None:
    body = (
        "mesh.service('a', run='a', depends_on=['b'])\n"
        "mesh.service('b', run='b', depends_on=['c'])\n"
        "mesh.service('c', run='c', depends_on=['a'])\n"
        "mesh.service('d', run='d', depends_on=['a'])\n"
    )
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:3: service 'a': depends_on cycle a -> b -> c -> a",
    ]


def test_two_cycles_are_both_reported(in_tmp: pathlib.Path) -> None:
    body = (
        "mesh.service('x', run='x', depends_on=['y'])\n"
        "mesh.service('y', run='y', depends_on=['x'])\n"
        "mesh.service('p', run='p', depends_on=['q'])\n"
        "mesh.service('q', run='q', depends_on=['p'])\n"
    )
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:3: service 'x': depends_on cycle x -> y -> x",
        "Meshfile.py:5: service 'p': depends_on cycle p -> q -> p",
    ]


def test_a_service_depending_on_itself(in_tmp: pathlib.Path) -> None:
    assert problems_of(in_tmp, "mesh.service('a', run='a', depends_on=['a'])\n") == [
        "Meshfile.py:3: service 'a': depends_on 'a' is the service itself",
    ]


def test_health_ranges(in_tmp: pathlib.Path) -> None:
    body = (
        "mesh.service('app', run='a',\n"
        "             health=http_get('healthz', period=0, timeout=-1, failure_threshold=0))\n"
        "mesh.service('db', run='d', health=tcp_connect(success_threshold=0, initial_delay=-2))\n"
    )
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:3: service 'app': health path 'healthz' must start with '/'",
        "Meshfile.py:3: service 'app': health period must be greater than 0, got 0s",
        "Meshfile.py:3: service 'app': health timeout must be greater than 0, got -1s",
        "Meshfile.py:3: service 'app': health failure_threshold must be at least 1, got 0",
        "Meshfile.py:5: service 'db': health initial_delay must not be negative, got -2s",
        "Meshfile.py:5: service 'db': health success_threshold must be at least 1, got 0",
    ]


def test_restart_ranges(in_tmp: pathlib.Path) -> None:
    body = "mesh.service('app', run='a', restart_policy=restart_policy(backoff='2s', max_backoff='1s'))\n"
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:3: service 'app': restart max_backoff (1s) must not be less than backoff (2s)",
    ]


def test_two_gateways(in_tmp: pathlib.Path) -> None:
    body = "mesh.service('frontend', run='f')\nmesh.gateway(port=0)\nmesh.gateway(port=0)\n"
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:5: gateway: a second gateway is declared (the first is at line 4); a mesh"
        " has one gateway",
    ]


def test_no_mesh(in_tmp: pathlib.Path) -> None:
    assert problems_of(in_tmp, "", header="import meshkit\n") == [
        'Meshfile.py:1: no mesh is declared: add `mesh = Mesh("name")` (from meshkit import Mesh)',
    ]


def test_two_meshes(in_tmp: pathlib.Path) -> None:
    assert problems_of(in_tmp, "other = Mesh('other')\n") == [
        "Meshfile.py:3: a second Mesh('other') is declared (the first, 'shop', is at line 2);"
        " a Meshfile declares exactly one mesh",
    ]


def test_missing_cwd(in_tmp: pathlib.Path) -> None:
    (in_tmp / "services").mkdir()
    body = (
        "mesh.service('ok', run='a', cwd='services')\n"
        "mesh.service('gone', run='a', cwd='services/gone')\n"
    )
    missing = os.path.join(in_tmp, "services", "gone")
    assert problems_of(in_tmp, body) == [
        f"Meshfile.py:4: service 'gone': cwd {missing!r} is not an existing directory",
    ]


def test_empty_command(in_tmp: pathlib.Path) -> None:
    assert problems_of(in_tmp, "mesh.service('app', run='  ')\n") == [
        "Meshfile.py:3: service 'app': run must be a non-empty command",
    ]


def test_problems_keep_the_path_the_user_gave(in_tmp: pathlib.Path) -> None:
    (in_tmp / "deploy").mkdir()
    (in_tmp / "deploy" / "mesh.py").write_text(
        HEADER + "mesh.service('app', run='a', replicas=0)\n"
    )
    (problem,) = evaluate_in_process("deploy/mesh.py").problems
    assert str(problem).startswith("deploy/mesh.py:3: service 'app'")


def test_validate_is_pure_over_declarations() -> None:
    origin = Origin(file="/m/Meshfile.py", line=7)
    declarations = Declarations(
        meshfile="/m/Meshfile.py",
        meshes=(
            MeshDeclaration(
                name="shop",
                file="/m/Meshfile.py",
                mtls="strict",
                cert_lifetime=86400.0,
                origin=origin,
                services=(ServiceSpec(name="app", command="a", cwd="/nowhere", origin=origin),),
            ),
        ),
    )
    assert validate(declarations, directory_exists=lambda path: path == "/nowhere") == []
    (problem,) = validate(declarations, directory_exists=lambda path: False)
    assert str(problem) == (
        "/m/Meshfile.py:7: service 'app': cwd '/nowhere' is not an existing directory"
    )


def test_a_sound_meshfile_has_no_problems(in_tmp: pathlib.Path) -> None:
    body = (
        "catalog = mesh.service('catalog', version='v1', run='c', replicas=2,\n"
        "                       health=http_get('/healthz', period='250ms'))\n"
        "mesh.service('catalog', version='v2', run='c', env={'FLAVOUR': 'new'})\n"
        "frontend = mesh.service('frontend', run='f', upstreams=[catalog],\n"
        "                        depends_on=[catalog], restart_policy=restart_policy('on_failure'))\n"
        "mesh.gateway(port=0, routes={'/': frontend, '/api': catalog})\n"
    )
    (in_tmp / "Meshfile.py").write_text(HEADER + body)
    result = evaluate_in_process("Meshfile.py")
    assert result.problems == ()
    assert result.ok
    assert result.spec is not None
    assert result.spec.file == str(in_tmp / "Meshfile.py")
    assert [s.key for s in result.spec.services] == ["catalog-v1", "catalog-v2", "frontend"]


def test_mtls_settings_and_gateway_tls_port_reach_the_spec(tmp_path: pathlib.Path) -> None:
    (tmp_path / "Meshfile.py").write_text(
        "from meshkit import Mesh\n"
        "mesh = Mesh('m', mtls='permissive', cert_lifetime='10s')\n"
        "mesh.service('a', run='x')\n"
        "mesh.gateway(port=0, tls_port=0, routes={'/': 'a'})\n"
    )
    result = evaluate_in_process(tmp_path / "Meshfile.py")
    assert result.ok, result.problems
    assert result.spec is not None and result.spec.gateway is not None
    assert result.spec.mtls == "permissive"
    assert result.spec.cert_lifetime == 10.0
    assert result.spec.gateway.tls_port == 0


def test_too_short_cert_lifetime_is_a_problem(tmp_path: pathlib.Path) -> None:
    (tmp_path / "Meshfile.py").write_text(
        "from meshkit import Mesh\nmesh = Mesh('m', cert_lifetime='500ms')\n"
        "mesh.service('a', run='x')\n"
    )
    result = evaluate_in_process(tmp_path / "Meshfile.py")
    assert [str(p).split(":", 2)[1:] for p in result.problems] == [
        [
            "2",
            " Mesh(...): cert_lifetime 0.5s is too short (at least 2s; certificates are renewed at half their lifetime)",
        ]
    ]


def test_gateway_hosts_must_be_dns_names(in_tmp: pathlib.Path) -> None:
    body = (
        "mesh.service('frontend', run='f')\n"
        "mesh.gateway(hosts=['shop.test', 'http://x.test', '*.test', '10.0.0.1', 'a:80', 3])\n"
    )
    hint = "(write a DNS name such as 'shop.test', without a scheme, port or wildcard; loopback is always allowed)"
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:4: gateway: hosts entries must be strings, got 3 (a int)",
        f"Meshfile.py:4: gateway: hosts: 'http://x.test' is not a host name {hint}",
        f"Meshfile.py:4: gateway: hosts: '*.test' is not a host name {hint}",
        f"Meshfile.py:4: gateway: hosts: '10.0.0.1' is not a host name {hint}",
        f"Meshfile.py:4: gateway: hosts: 'a:80' is not a host name {hint}",
    ]


def test_gateway_hosts_reach_every_config_with_the_service_names(in_tmp: pathlib.Path) -> None:
    from meshkit.registry.compile import compile_configs
    from meshkit.runtime.mesh import build_registry
    from meshkit.runtime.ports import PortAllocator

    (in_tmp / "Meshfile.py").write_text(
        HEADER + "mesh.service('frontend', run='f')\nmesh.gateway(hosts=['Shop.Test', 'shop.test.'])\n"
    )
    result = evaluate_in_process("Meshfile.py")
    assert result.spec is not None and result.spec.gateway is not None
    assert result.spec.gateway.hosts == ("shop.test",)
    configs = compile_configs(result.spec, build_registry(result.spec, PortAllocator()))
    assert {config.allowed_hosts for config in configs.values()} == {("frontend", "shop.test")}
