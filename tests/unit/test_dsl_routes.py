"""Routes and policies in a Meshfile: the verbs, the validation messages, the compiled tables."""

from __future__ import annotations

import pathlib

import pytest

from meshkit.api import (
    DEFAULT_ROUTE_TIMEOUT,
    DestinationPolicy,
    DirectResponse,
    Forward,
    HeaderMatch,
    HeaderOps,
    QueryMatch,
    Redirect,
    RequestMatch,
    RouteRule,
    RouteTable,
    WeightedVersion,
)
from meshkit.dsl import evaluate_in_process
from meshkit.dsl.convert import spec_from_json, spec_to_json
from meshkit.dsl.spec import MeshSpec
from meshkit.registry.routes import destination_policies, route_tables

HEADER = (
    "from meshkit import *\n"
    "mesh = Mesh('shop')\n"
    "mesh.service('catalog', run='c', version='v1')\n"
    "mesh.service('catalog', run='c', version='v2')\n"
    "mesh.service('frontend', run='f')\n"
)
"""Five lines: a body written after it starts at line 6."""

EXAMPLE = """\
mesh.route("catalog",
    match(headers={"x-canary": "1"}).to(version="v2"),
    match(path_prefix="/admin", method="POST").respond(403, "admins only\\n"),
    match(path="/old").redirect(path="/items", status=301),
    match(path_regex=r"^/items/\\d+$", query={"debug": "1"}).to(version="v1",
          rewrite_prefix="/v1/items",
          request_headers=headers(set={"x-debug": "1"}, remove=["cookie"])),
    default=split(v1=90, v2=10),
    timeout="2s", retry=retry(attempts=3, per_try_timeout="500ms",
                                retry_on=["5xx", "connect-failure"]),
    fault=fault(abort=503, percent=10), mirror=mirror(version="v2", percent=20),
    response_headers=headers(add={"x-served-by": "mesh"}))
mesh.policy("catalog", load_balancer="least_request",
            breaker=breaker(max_connections=100, max_requests=100, max_retries=3),
            outlier=outlier(consecutive_errors=5, base_ejection="30s", max_ejection="300s",
                            max_ejection_percent=50),
            retry_budget=retry_budget(percent=20, min_per_second=10))
"""


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spec_of(directory: pathlib.Path, body: str) -> MeshSpec:
    (directory / "Meshfile.py").write_text(HEADER + body)
    result = evaluate_in_process("Meshfile.py")
    assert [str(problem) for problem in result.problems] == []
    assert result.spec is not None
    return result.spec


def problems_of(directory: pathlib.Path, body: str) -> list[str]:
    (directory / "Meshfile.py").write_text(HEADER + body)
    result = evaluate_in_process("Meshfile.py")
    assert result.spec is None
    return [str(problem) for problem in result.problems]


def test_the_example_compiles_to_a_table_with_route_options_filled_in(in_tmp: pathlib.Path) -> None:
    spec = spec_of(in_tmp, EXAMPLE)
    assert spec_from_json(spec_to_json(spec)) == spec
    tables = {table.service: table for table in route_tables(spec)}
    catalog = tables["catalog"]
    assert len(catalog.rules) == 5
    canary, admin, old, items, default = catalog.rules
    assert canary.match == RequestMatch(headers=(HeaderMatch(name="x-canary", value="1"),))
    assert canary.action == Forward(versions=(WeightedVersion(version="v2"),))
    assert canary.timeout == 2.0
    assert canary.retry is not None and canary.retry.attempts == 3
    assert canary.retry.per_try_timeout == 0.5
    assert canary.retry.retry_on == ("5xx", "connect-failure")
    assert canary.fault is not None and canary.fault.abort_status == 503
    assert canary.fault.abort_percent == 10.0
    assert canary.mirror is not None and canary.mirror.percent == 20.0
    assert canary.response_headers == HeaderOps(add=(("x-served-by", "mesh"),))
    assert admin.match == RequestMatch(path_kind="prefix", path="/admin", methods=("POST",))
    assert admin.action == DirectResponse(status=403, body="admins only\n")
    assert admin.retry is None and admin.fault is None and admin.mirror is None
    assert old.action == Redirect(path="/items", status=301)
    assert items.match.query == (QueryMatch(name="debug", value="1"),)
    assert items.action == Forward(
        versions=(WeightedVersion(version="v1"),), rewrite_prefix="/v1/items"
    )
    assert items.request_headers == HeaderOps(set=(("x-debug", "1"),), remove=("cookie",))
    assert default.match == RequestMatch()
    assert default.action == Forward(
        versions=(
            WeightedVersion(version="v1", weight=90),
            WeightedVersion(version="v2", weight=10),
        )
    )
    assert tables["frontend"] == RouteTable(service="frontend", rules=(RouteRule(),))
    policies = {policy.service: policy for policy in destination_policies(spec)}
    assert policies["catalog"].load_balancer == "least_request"
    assert policies["catalog"].breaker.max_requests == 100
    assert policies["frontend"] == DestinationPolicy(service="frontend")


def test_services_without_routes_get_all_versions_round_robin_and_the_default_timeout(
    in_tmp: pathlib.Path,
) -> None:
    spec = spec_of(in_tmp, "")
    tables = route_tables(spec)
    assert [table.service for table in tables] == ["catalog", "frontend"]
    (rule,) = tables[0].rules
    assert rule.action == Forward(versions=(WeightedVersion(version=None, weight=100),))
    assert rule.timeout == DEFAULT_ROUTE_TIMEOUT == 15.0
    assert rule.retry is None
    policy = destination_policies(spec)[0]
    assert (policy.load_balancer, policy.breaker.max_retries) == ("round_robin", 3)
    assert (policy.outlier.consecutive_errors, policy.outlier.base_ejection) == (5, 30.0)
    assert (policy.retry_budget.percent, policy.retry_budget.min_per_second) == (20.0, 10.0)


def test_rule_options_override_the_route_and_a_version_name_is_a_default(
    in_tmp: pathlib.Path,
) -> None:
    body = (
        "mesh.route('catalog',\n"
        "    match(path_prefix='/slow').to(timeout=0, retry=retry(attempts=1)),\n"
        "    default='v1', timeout='3s', retry=retry(attempts=4))\n"
    )
    (slow, default) = route_tables(spec_of(in_tmp, body))[0].rules
    assert slow.timeout == 0.0
    assert slow.retry is not None and slow.retry.attempts == 1
    assert slow.action == Forward(versions=(WeightedVersion(version=None),))
    assert default.timeout == 3.0
    assert default.retry is not None and default.retry.attempts == 4
    assert default.action == Forward(versions=(WeightedVersion(version="v1"),))


def test_header_and_query_matchers_of_every_kind(in_tmp: pathlib.Path) -> None:
    body = (
        "mesh.route('catalog', match(\n"
        "    headers={'X-User': prefix('adm'), 'x-id': regex(r'\\d+'), 'x-a': present(),\n"
        "             'x-b': absent(), 'x-c': 'exact'},\n"
        "    query={'q': regex('a.*'), 'p': present(), 'e': 'x'},\n"
        "    method=['get', 'HEAD']).split({'v1': 50}, v2=50))\n"
    )
    rule = route_tables(spec_of(in_tmp, body))[0].rules[0]
    assert rule.match.headers == (
        HeaderMatch(name="x-user", kind="prefix", value="adm"),
        HeaderMatch(name="x-id", kind="regex", value=r"\d+"),
        HeaderMatch(name="x-a", kind="present"),
        HeaderMatch(name="x-b", kind="absent"),
        HeaderMatch(name="x-c", kind="exact", value="exact"),
    )
    assert rule.match.query == (
        QueryMatch(name="q", kind="regex", value="a.*"),
        QueryMatch(name="p", kind="present"),
        QueryMatch(name="e", kind="exact", value="x"),
    )
    assert rule.match.methods == ("GET", "HEAD")
    assert isinstance(rule.action, Forward)
    assert [(v.version, v.weight) for v in rule.action.versions] == [("v1", 50), ("v2", 50)]


def test_fault_with_grpc_abort_delay_and_header_condition(in_tmp: pathlib.Path) -> None:
    body = (
        "mesh.route('catalog', fault=fault(delay='100ms', abort='unavailable', percent=30,\n"
        "                                  abort_percent=5, headers={'x-chaos': '1'}))\n"
    )
    fault = route_tables(spec_of(in_tmp, body))[0].rules[0].fault
    assert fault is not None
    assert (fault.delay, fault.delay_percent) == (0.1, 30.0)
    assert (fault.abort_grpc, fault.abort_status, fault.abort_percent) == ("unavailable", None, 5.0)
    assert fault.headers == (HeaderMatch(name="x-chaos", value="1"),)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "mesh.route('catalog', match(path='/a').to(version='v3'))\n",
            [
                "Meshfile.py:6: route 'catalog' sends traffic to unknown version 'v3' (versions: v1, v2)"
            ],
        ),
        (
            "mesh.route('catalog', default=split(v1=90, v2=20))\n",
            ["Meshfile.py:6: route 'catalog': split weights must sum to 100, got 90 + 20 = 110"],
        ),
        (
            "mesh.route('catalog',\n    default=split(v1=101, v2=-1))\n",
            ["Meshfile.py:6: route 'catalog': weight of 'v2' must be 0 or more, got -1"],
        ),
        (
            "mesh.route('catalogue')\n",
            [
                "Meshfile.py:6: route 'catalogue': 'catalogue' is not a service in this mesh"
                " (did you mean 'catalog'?)"
            ],
        ),
        (
            "mesh.policy('nope')\n",
            ["Meshfile.py:6: policy 'nope': 'nope' is not a service in this mesh"],
        ),
        (
            "mesh.route('catalog',\n    match(path_regex='(').to())\n",
            [
                "Meshfile.py:7: route 'catalog': path_regex '(' is not a valid regular expression"
                " (RE2: missing ): ()"
            ],
        ),
        (
            "mesh.route('catalog',\n    match(headers={'x': regex(r'(a)\\1')}).to())\n",
            [
                "Meshfile.py:7: route 'catalog': header 'x' regex '(a)\\\\1' is not a valid regular"
                " expression (RE2: invalid escape sequence: \\1); Python's re would accept it, but"
                " route patterns run on RE2, in linear time: no backreferences or lookaround"
            ],
        ),
        (
            "mesh.route('catalog', match(path='/x').redirect(path='/y', status=200))\n",
            [
                "Meshfile.py:6: route 'catalog': redirect status 200 is not one of"
                " 301, 302, 303, 307, 308"
            ],
        ),
        (
            "mesh.route('catalog', match(path='/x').respond(700))\n",
            ["Meshfile.py:6: route 'catalog': respond status 700 is not an HTTP status (200..599)"],
        ),
        (
            "mesh.route('catalog',\n    mirror=mirror(version='v2', percent=120))\n",
            ["Meshfile.py:7: route 'catalog': mirror percent must be between 0 and 100, got 120"],
        ),
        (
            "mesh.route('catalog',\n    retry=retry(attempts=0))\n",
            ["Meshfile.py:7: route 'catalog': retry attempts must be at least 1, got 0"],
        ),
        (
            "mesh.route('catalog', retry=retry(retry_on=['5xxx']))\n",
            [
                "Meshfile.py:6: route 'catalog': retry_on '5xxx' is not a retry condition (use one"
                " of 5xx, gateway-error, connect-failure, refused-stream, reset, a status code or a"
                " gRPC status such as 'unavailable') (did you mean '5xx'?)"
            ],
        ),
        (
            "mesh.route('catalog')\nmesh.route('catalog')\n",
            [
                "Meshfile.py:7: a second route for 'catalog' (the first is at line 6); put every"
                " rule for a service in one mesh.route(...)"
            ],
        ),
        (
            "mesh.policy('catalog')\nmesh.policy('catalog')\n",
            [
                "Meshfile.py:7: a second policy for 'catalog' (the first is at line 6); put every"
                " rule for a service in one mesh.policy(...)"
            ],
        ),
        (
            "mesh.route('catalog', fault=fault(abort='unavailabel'))\n",
            [
                "Meshfile.py:6: route 'catalog': fault abort 'unavailabel' is not a gRPC status"
                " name (did you mean 'unavailable'?)"
            ],
        ),
        (
            "mesh.route('catalog', fault=fault(delay='1s', percent=-1))\n",
            [
                "Meshfile.py:6: route 'catalog': fault delay percent must be between 0 and 100, got -1"
            ],
        ),
        (
            "mesh.policy('catalog', load_balancer='least_requests')\n",
            [
                "Meshfile.py:6: policy 'catalog': load_balancer 'least_requests' is not one of"
                " 'round_robin', 'least_request' (did you mean 'least_request'?)"
            ],
        ),
        (
            "mesh.policy('catalog',\n    outlier=outlier(max_ejection_percent=150, base_ejection='1m',"
            " max_ejection='10s'))\n",
            [
                "Meshfile.py:7: policy 'catalog': outlier max_ejection (10s) must not be less than"
                " base_ejection (60s)",
                "Meshfile.py:7: policy 'catalog': outlier max_ejection_percent must be between 0"
                " and 100, got 150",
            ],
        ),
        (
            "mesh.policy('catalog', breaker=breaker(max_requests=0))\n",
            ["Meshfile.py:6: policy 'catalog': breaker max_requests must be at least 1, got 0"],
        ),
        (
            "mesh.route('catalog', match(path='x').to(rewrite_prefix='y'))\n",
            [
                "Meshfile.py:6: route 'catalog': path 'x' must start with '/'",
                "Meshfile.py:6: route 'catalog': rewrite_prefix 'y' must start with '/'",
            ],
        ),
        (
            "mesh.route('catalog', match(headers={'x-a': 3}).to())\n",
            [
                "Meshfile.py:6: match(...): headers 'x-a' must be a string or one of prefix(),"
                " regex(), present(), absent(), got 3 (a int)"
            ],
        ),
        (
            "mesh.route('catalog', match(path='/a').to(\n"
            "    request_headers=headers(set={'x-a': 'one\\r\\nx-b: two', 'x-c': ' padded'})))\n",
            [
                "Meshfile.py:6: route 'catalog': request_headers: the value of 'x-a' must not"
                " contain CR, LF or NUL, got 'one\\r\\nx-b: two'",
                "Meshfile.py:6: route 'catalog': request_headers: the value of 'x-c' must not"
                " begin or end with a space or tab, got ' padded'",
            ],
        ),
        (
            "mesh.route('catalog', match(path='/a').redirect(path='/b\\r\\nset-cookie: x=1'))\n",
            [
                "Meshfile.py:6: route 'catalog': redirect path must not contain CR, LF or NUL,"
                " got '/b\\r\\nset-cookie: x=1'"
            ],
        ),
        (
            "mesh.route('catalog', match(path='/a'))\n",
            [
                "Meshfile.py:6: route 'catalog': a match(...) needs an action: add .to(...),"
                " .split(...), .redirect(...) or .respond(...)"
            ],
        ),
        (
            "mesh.route('catalog', timeout='soon', retry=3)\n",
            [
                "Meshfile.py:6: route 'catalog': retry must be retry(...), got 3 (a int)",
                "Meshfile.py:6: route 'catalog': timeout: 'soon' is not a duration (use a number"
                ' of seconds or a string like "250ms", "2s", "1.5m", "1h")',
            ],
        ),
    ],
)
def test_validation_messages(in_tmp: pathlib.Path, body: str, expected: list[str]) -> None:
    assert sorted(problems_of(in_tmp, body)) == sorted(expected)


def test_max_pending_is_gone_and_a_meshfile_using_it_is_told_at_its_line(
    in_tmp: pathlib.Path,
) -> None:
    # The sidecar never queues a request waiting for a connection: no such limit.
    [problem] = problems_of(in_tmp, "mesh.policy('catalog', breaker=breaker(max_pending=10))\n")
    assert problem.splitlines()[0] == (
        "Meshfile.py:6: TypeError: breaker() got an unexpected keyword argument 'max_pending'"
    )


def test_a_local_reply_rule_with_destination_options_is_refused() -> None:
    from meshkit.api import DirectResponse, RequestMatch
    from meshkit.dsl.checks.traffic import traffic_problems
    from meshkit.dsl.spec import Origin, RouteSpec, RuleSpec, ServiceSpec
    from meshkit.dsl.verbs.collect import MeshDeclaration

    origin = Origin(file="Meshfile.py", line=9)
    rule = RuleSpec(match=RequestMatch(), action=DirectResponse(status=204), timeout=1.0, origin=origin)
    mesh = MeshDeclaration(
        name="shop",
        file="Meshfile.py",
        mtls="strict",
        cert_lifetime=60.0,
        origin=origin,
        services=(ServiceSpec(name="catalog", command="c"),),
        routes=(RouteSpec(service="catalog", rules=(rule,), origin=origin),),
    )
    assert [str(problem) for problem in traffic_problems(mesh)] == [
        "Meshfile.py:9: route 'catalog': a respond rule calls no service, so timeout= means"
        " nothing here"
    ]


def test_a_service_without_versions_names_none(in_tmp: pathlib.Path) -> None:
    body = "mesh.route('frontend', default='v1')\n"
    assert problems_of(in_tmp, body) == [
        "Meshfile.py:6: route 'frontend' sends traffic to unknown version 'v1' (versions: none"
        " declared)"
    ]
