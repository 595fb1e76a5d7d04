"""Rate limits in a Meshfile, at runtime and on the command line: parsing, messages, compile."""

from __future__ import annotations

import argparse
import pathlib

import pytest

from meshkit.api import RateLimit, RequestMatch
from meshkit.cli.limit import UsageError, plan_request
from meshkit.dsl import evaluate_in_process
from meshkit.dsl.rates import RateError, parse_rate
from meshkit.dsl.spec import MeshSpec
from meshkit.registry.diff import diff_specs
from meshkit.registry.faults import UnknownService
from meshkit.registry.limits import (
    LimitRequestError,
    LimitStore,
    declared_limits,
    effective_limits,
    limit_request,
)

HEADER = (
    "from meshkit import *\n"
    "mesh = Mesh('shop')\n"
    "mesh.service('catalog', run='c')\n"
    "mesh.service('frontend', run='f')\n"
)
"""Four lines: a body written after it starts at line 5."""


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def evaluated(directory: pathlib.Path, body: str) -> tuple[MeshSpec | None, list[str]]:
    (directory / "Meshfile.py").write_text(HEADER + body)
    result = evaluate_in_process("Meshfile.py")
    return result.spec, [str(problem) for problem in result.problems]


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [("100/s", 100, 1.0), ("5/m", 5, 60.0), ("1000/h", 1000, 3600.0), ("10/2s", 10, 2.0),
     (" 3 / 500ms ", 3, 0.5)],
)  # fmt: skip
def test_rates_as_people_write_them(text: str, count: int, period: float) -> None:
    assert parse_rate(text) == (count, period)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0/s", "admits no request at all"),
        ("ten/s", "'ten' is not a whole number of requests"),
        ("100", "has no period"),
        ("5/fortnight", "'fortnight' is not a period"),
        ("5/0s", "the period must be longer than 0"),
        (100, "is not a rate"),
    ],
)
def test_bad_rates_say_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(RateError, match=message):
        parse_rate(value)


def test_the_meshfile_declares_limits_per_service_route_and_caller(in_tmp: pathlib.Path) -> None:
    spec, problems = evaluated(
        in_tmp,
        "mesh.rate_limit('catalog', '100/s', burst=20)\n"
        "mesh.rate_limit('catalog', '10/s', per='caller')\n"
        "mesh.rate_limit('catalog', '5/m', route=match(path_prefix='/search', method='GET'))\n",
    )
    assert problems == []
    assert spec is not None
    assert declared_limits(spec) == (
        RateLimit(service="catalog", max_tokens=20, tokens_per_fill=5, fill_interval=0.05,
                  declared_at="Meshfile.py:5"),
        RateLimit(service="catalog", max_tokens=10, tokens_per_fill=1, fill_interval=0.1,
                  per="caller", declared_at="Meshfile.py:6"),
        RateLimit(service="catalog", max_tokens=5, tokens_per_fill=1, fill_interval=12.0,
                  match=RequestMatch(path_kind="prefix", path="/search", methods=("GET",)),
                  declared_at="Meshfile.py:7"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "mesh.rate_limit('catalog', '0/s')\n",
            "Meshfile.py:5: rate_limit 'catalog': '0/s' admits no request at all",
        ),
        (
            "mesh.rate_limit('catalog', 'ten/s')\n",
            "Meshfile.py:5: rate_limit 'catalog': 'ten/s': 'ten' is not a whole number",
        ),
        (
            "mesh.rate_limit('catalgo', '5/s')\n",
            "Meshfile.py:5: rate_limit 'catalgo': 'catalgo' is not a service in this mesh "
            "(did you mean 'catalog'?)",
        ),
        (
            "mesh.rate_limit('catalog', '5/s', burst=0)\n",
            "Meshfile.py:5: rate_limit 'catalog': burst must be at least 1",
        ),
        (
            "mesh.rate_limit('catalog', '5/s', per='callr')\n",
            "Meshfile.py:5: rate_limit 'catalog': per 'callr' is not one of 'service', 'caller'",
        ),
        (
            "mesh.rate_limit('catalog', '5/s', route='/items')\n",
            "Meshfile.py:5: rate_limit 'catalog': route must be match(...)",
        ),
        (
            "mesh.rate_limit('catalog', '5/s', route=match(path_regex='(x'))\n",
            "Meshfile.py:5: route 'catalog': path_regex '(x' is not a valid regular expression",
        ),
        (
            "mesh.rate_limit('catalog', '5/s')\nmesh.rate_limit('catalog', '9/s')\n",
            "Meshfile.py:6: rate_limit 'catalog': a second limit on the same requests "
            "(the first is at line 5)",
        ),
    ],
)
def test_mistakes_are_named_at_their_line(in_tmp: pathlib.Path, body: str, expected: str) -> None:
    _, problems = evaluated(in_tmp, body)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


def test_a_changed_limit_is_a_config_change_pushed_like_routes(in_tmp: pathlib.Path) -> None:
    before, _ = evaluated(in_tmp, "mesh.rate_limit('catalog', '5/s')\n")
    after, _ = evaluated(in_tmp, "mesh.rate_limit('catalog', '6/s')\n")
    assert before is not None and after is not None
    diff = diff_specs(before, after)
    assert diff.config == ("rate_limits",) and diff.deployments == ()


def limit(per_second: int, *, route: str | None = None, declared_at: str = "") -> RateLimit:
    return RateLimit(
        service="catalog",
        max_tokens=per_second,
        tokens_per_fill=1,
        fill_interval=1 / per_second,
        match=None if route is None else RequestMatch(path_kind="prefix", path=route),
        declared_at=declared_at,
    )


def test_a_runtime_limit_replaces_the_declared_one_on_the_same_requests_until_removed() -> None:
    declared = (limit(5, declared_at="Meshfile.py:5"), limit(3, route="/a", declared_at="M:6"))
    store = LimitStore()
    first = store.add(limit(50), expires_at=100.0)
    newer = store.add(limit(70), expires_at=200.0)
    other = store.add(limit(1, route="/b"), expires_at=200.0)
    assert first.limit.declared_at == "meshkit limit l1"
    assert effective_limits(declared, store, now=50.0) == (declared[1], newer.limit, other.limit)
    assert effective_limits(declared, store, now=150.0) == (declared[1], newer.limit, other.limit)
    store.remove_service("catalog")
    assert effective_limits(declared, store, now=150.0) == declared
    assert effective_limits(declared, store, now=300.0) == declared


def test_limit_requests_are_validated_field_by_field() -> None:
    known = ["catalog"]
    made, duration = limit_request(
        {"service": "catalog", "rate": "10/s", "burst": 3, "route": "/x", "per": "caller"},
        known_services=known,
    )
    assert (made.max_tokens, made.per, made.match, duration) == (
        3,
        "caller",
        RequestMatch(path_kind="prefix", path="/x"),
        3600.0,
    )
    for body, message in [
        ({"service": "catalog", "rate": "0/s"}, "'rate': '0/s' admits no request"),
        ({"service": "catalog", "rate": "1/s", "burst": 0}, "'burst' must be a whole number"),
        ({"service": "catalog", "rate": "1/s", "route": "x"}, "'route' must be a path prefix"),
        ({"service": "catalog", "rate": "1/s", "per": "ip"}, "'per' must be 'service' or"),
        ({"service": "catalog", "rate": "1/s", "duration": "2d"}, "'duration'"),
        ({"service": "catalog", "rate": "1/s", "colour": 1}, "unknown field"),
    ]:
        with pytest.raises(LimitRequestError, match=message):
            limit_request(body, known_services=known)
    with pytest.raises(UnknownService, match="no service called 'x'"):
        limit_request({"service": "x", "rate": "1/s"}, known_services=known)


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    from meshkit.cli import limit as limit_cli

    limit_cli.add_parser(sub)
    return parser.parse_args(["limit", *argv])


def test_the_cli_plans_control_api_calls() -> None:
    assert plan_request(cli_args()) == ("GET", "/v1/limits", None)
    assert plan_request(cli_args("--list")) == ("GET", "/v1/limits", None)
    assert plan_request(cli_args("catalog", "--clear")) == (
        "DELETE",
        "/v1/limits?service=catalog",
        None,
    )
    assert plan_request(cli_args("catalog", "5/s", "--burst", "2", "--per", "caller")) == (
        "POST",
        "/v1/limits",
        {"service": "catalog", "rate": "5/s", "burst": 2, "route": None, "per": "caller",
         "duration": None},
    )  # fmt: skip
    for argv, message in [
        (("catalog",), "say how many requests catalog admits"),
        (("catalog", "0/s"), "admits no request"),
        (("catalog", "5/s", "--route", "x"), "a path prefix starts with '/'"),
        (("catalog", "5/s", "--duration", "0s"), "--duration must be longer than 0"),
        (("--clear",), "--clear needs the SERVICE"),
    ]:
        with pytest.raises(UsageError, match=message):
            plan_request(cli_args(*argv))
