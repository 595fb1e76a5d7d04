"""Each routing feature of a Meshfile, and the Istio fields it must produce.

Every case is a Meshfile snippet (after a header declaring catalog v1/v2 and
frontend), the object it lands in, the path inside that object and the value
expected there; every object of every case is validated against its schema.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests.schemas.validation import export_validated

HEADER = (
    "from meshkit import *\n"
    "mesh = Mesh('shop')\n"
    "mesh.service('catalog', run='c', version='v1', image='shop/catalog:1')\n"
    "mesh.service('catalog', run='c', version='v2', image='shop/catalog:2')\n"
    "mesh.service('frontend', run='f', image='shop/frontend:1')\n"
)
"""Five lines: a snippet starts at line 6."""

NO_RETRIES = {"attempts": 0}
TO_V2 = [{"destination": {"host": "catalog", "subset": "v2"}}]

# (id, snippet, (kind, name), path, expected)
CASES: list[tuple[str, str, tuple[str, str], tuple[Any, ...], Any]] = [
    (
        "header exact, to a version",
        'mesh.route("catalog", match(headers={"x-canary": "1"}).to(version="v2"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0),
        {
            "name": "rule-1",
            "match": [{"headers": {"x-canary": {"exact": "1"}}}],
            "route": TO_V2,
            "timeout": "15s",
            "retries": NO_RETRIES,
        },
    ),
    (
        "header prefix, regex, present, absent",
        'mesh.route("catalog", match(headers={"x-user": prefix("beta-"), "x-id": regex("[0-9]+"),'
        ' "x-debug": present(), "x-internal": absent()}).to(version="v2"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "match"),
        [
            {
                "headers": {
                    "x-user": {"prefix": "beta-"},
                    "x-id": {"regex": "[0-9]+"},
                    "x-debug": {},
                },
                "withoutHeaders": {"x-internal": {}},
            }
        ],
    ),
    (
        "one method",
        'mesh.route("catalog", match(method="GET").to(version="v2"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "match"),
        [{"method": {"exact": "GET"}}],
    ),
    (
        "several methods",
        'mesh.route("catalog", match(method=["GET", "HEAD"]).to(version="v2"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "match"),
        [{"method": {"regex": "GET|HEAD"}}],
    ),
    (
        "path exact",
        'mesh.route("catalog", match(path="/items").to(version="v2"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "match"),
        [{"uri": {"exact": "/items"}}],
    ),
    (
        "path prefix and query",
        'mesh.route("catalog", match(path_prefix="/api/", query={"debug": "1", "q": regex("a.*"),'
        ' "trace": present()}).to(version="v2"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "match"),
        [
            {
                "uri": {"prefix": "/api/"},
                "queryParams": {
                    "debug": {"exact": "1"},
                    "q": {"regex": "a.*"},
                    "trace": {"regex": ".*"},
                },
            }
        ],
    ),
    (
        "path regex",
        'mesh.route("catalog", match(path_regex=r"/items/[0-9]+").to(version="v2"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "match"),
        [{"uri": {"regex": "/items/[0-9]+"}}],
    ),
    (
        "weighted default",
        'mesh.route("catalog", default=split(v1=90, v2=10))',
        ("VirtualService", "catalog"),
        ("spec", "http", -1),
        {
            "name": "default",
            "route": [
                {"destination": {"host": "catalog", "subset": "v1"}, "weight": 90},
                {"destination": {"host": "catalog", "subset": "v2"}, "weight": 10},
            ],
            "timeout": "15s",
            "retries": NO_RETRIES,
        },
    ),
    (
        "a canary at weight 0",
        'mesh.route("catalog", match(path="/x").split(v1=100, v2=0))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "route", 1),
        {"destination": {"host": "catalog", "subset": "v2"}, "weight": 0},
    ),
    (
        "rewrite prefix",
        'mesh.route("catalog", match(path_prefix="/api/v1/").to(version="v1", rewrite_prefix="/"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "rewrite"),
        {"uri": "/"},
    ),
    (
        "redirect",
        'mesh.route("catalog", match(path="/old").redirect(path="/items", host="shop.example", '
        "status=308))",
        ("VirtualService", "catalog"),
        ("spec", "http", 0),
        {
            "name": "rule-1",
            "match": [{"uri": {"exact": "/old"}}],
            "redirect": {"uri": "/items", "authority": "shop.example", "redirectCode": 308},
        },
    ),
    (
        "direct response",
        'mesh.route("catalog", match(path="/ping").respond(200, "pong"))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "directResponse"),
        {"status": 200, "body": {"string": "pong"}},
    ),
    (
        "header operations",
        'mesh.route("catalog", request_headers=headers(set={"x-mesh": "1"}, remove=["x-debug"]),'
        ' response_headers=headers(add={"x-served-by": "meshkit"}))',
        ("VirtualService", "catalog"),
        ("spec", "http", -1, "headers"),
        {
            "request": {"set": {"x-mesh": "1"}, "remove": ["x-debug"]},
            "response": {"add": {"x-served-by": "meshkit"}},
        },
    ),
    (
        "response headers on a local reply",
        'mesh.route("catalog", match(path="/ping").respond(204),'
        ' response_headers=headers(set={"x-served-by": "meshkit"}))',
        ("VirtualService", "catalog"),
        ("spec", "http", 0),
        {
            "name": "rule-1",
            "match": [{"uri": {"exact": "/ping"}}],
            "directResponse": {"status": 204},
            "headers": {"response": {"set": {"x-served-by": "meshkit"}}},
        },
    ),
    (
        "delay fault",
        'mesh.route("catalog", match(path_prefix="/slow").to(fault=fault(delay="300ms", '
        "percent=10)))",
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "fault"),
        {"delay": {"fixedDelay": "300ms", "percentage": {"value": 10.0}}},
    ),
    (
        "abort fault, HTTP status",
        'mesh.route("catalog", fault=fault(abort=503, percent=25))',
        ("VirtualService", "catalog"),
        ("spec", "http", -1, "fault"),
        {"abort": {"httpStatus": 503, "percentage": {"value": 25.0}}},
    ),
    (
        "abort fault, gRPC status",
        'mesh.route("catalog", fault=fault(abort="resource-exhausted"))',
        ("VirtualService", "catalog"),
        ("spec", "http", -1, "fault"),
        {"abort": {"grpcStatus": "RESOURCE_EXHAUSTED", "percentage": {"value": 100.0}}},
    ),
    (
        "fault limited to a header: a rule of its own first",
        'mesh.route("catalog", match(path="/x").to(version="v1", '
        'fault=fault(abort=500, headers={"x-chaos": "1"})))',
        ("VirtualService", "catalog"),
        ("spec", "http"),
        [
            {
                "name": "rule-1-fault",
                "match": [{"uri": {"exact": "/x"}, "headers": {"x-chaos": {"exact": "1"}}}],
                "route": [{"destination": {"host": "catalog", "subset": "v1"}}],
                "timeout": "15s",
                "retries": NO_RETRIES,
                "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 100.0}}},
            },
            {
                "name": "rule-1",
                "match": [{"uri": {"exact": "/x"}}],
                "route": [{"destination": {"host": "catalog", "subset": "v1"}}],
                "timeout": "15s",
                "retries": NO_RETRIES,
            },
            {
                "name": "default",
                "route": [{"destination": {"host": "catalog"}}],
                "timeout": "15s",
                "retries": NO_RETRIES,
            },
        ],
    ),
    (
        "retries with retryOn and status codes",
        'mesh.route("catalog", retry=retry(attempts=3, per_try_timeout="500ms",'
        ' retry_on=["5xx", "connect-failure", "reset", 429, "unavailable"]))',
        ("VirtualService", "catalog"),
        ("spec", "http", -1, "retries"),
        {
            "attempts": 3,
            "retryOn": "5xx,connect-failure,reset,unavailable,429",
            "perTryTimeout": "500ms",
            "backoff": "25ms",
            "retryIgnorePreviousHosts": True,
        },
    ),
    (
        "a rule's own retries win over the route's",
        'mesh.route("catalog", match(path="/x").to(retry=retry(attempts=1, retry_on=["reset"])),'
        " retry=retry(attempts=4))",
        ("VirtualService", "catalog"),
        ("spec", "http", 0, "retries", "attempts"),
        1,
    ),
    (
        "timeout",
        'mesh.route("catalog", timeout="2.5s")',
        ("VirtualService", "catalog"),
        ("spec", "http", -1, "timeout"),
        "2500ms",
    ),
    (
        "mirror with a percentage",
        'mesh.route("catalog", mirror=mirror(version="v2", percent=5))',
        ("VirtualService", "catalog"),
        ("spec", "http", -1),
        {
            "name": "default",
            "route": [{"destination": {"host": "catalog"}}],
            "timeout": "15s",
            "retries": NO_RETRIES,
            "mirror": {"host": "catalog", "subset": "v2"},
            "mirrorPercentage": {"value": 5.0},
        },
    ),
]


def export_snippet(tmp_path: pathlib.Path, snippet: str, header: str = HEADER) -> Any:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(header + snippet + "\n", encoding="utf-8")
    return export_validated(meshfile)


def find(exported: Any, kind: str, name: str) -> dict[str, Any]:
    found = [m.body for m in exported.manifests if m.kind == kind and m.name == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def dig(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        body = body[step]
    return body


@pytest.mark.parametrize(
    ("snippet", "target", "path", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_feature_produces_istio_fields(
    tmp_path: pathlib.Path,
    snippet: str,
    target: tuple[str, str],
    path: tuple[Any, ...],
    expected: Any,
) -> None:
    exported = export_snippet(tmp_path, snippet)
    assert dig(find(exported, *target), path) == expected


def test_the_route_carries_the_line_it_was_declared_on(tmp_path: pathlib.Path) -> None:
    exported = export_snippet(tmp_path, "\n\nmesh.route('catalog', timeout='1s')")
    body = find(exported, "VirtualService", "catalog")
    assert body["metadata"]["annotations"] == {"meshkit.dev/origin": "Meshfile.py:8"}
    policy = find(exported, "DestinationRule", "catalog")
    assert policy["metadata"]["annotations"] == {"meshkit.dev/origin": "Meshfile.py:3"}
