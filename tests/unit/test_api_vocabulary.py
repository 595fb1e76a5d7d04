"""``meshkit.api`` is the one vocabulary of routes and policies: nothing may drift from it.

Every api class round-trips through the converters of the DSL and of the
sidecar's wire format; no class of ``meshkit.dsl`` or ``meshkit.proxy``
re-declares an api class's fields (a DSL class extends one and adds only its
origin); and the packages import only what their room allows.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

import meshkit
import meshkit.api as api
from meshkit.api import authz, jwt, template
from meshkit.api import converter as api_converter
from meshkit.dsl import convert, spec
from meshkit.dsl.spec import Origin
from meshkit.proxy import wire

MESHKIT = Path(meshkit.__file__).parent

HEADER = api.HeaderMatch(name="x-canary", kind="prefix", value="be")
MATCH = api.RequestMatch(
    path_kind="regex",
    path="/items/[0-9]+",
    methods=("GET", "HEAD"),
    headers=(HEADER,),
    query=(api.QueryMatch(name="page", kind="present"),),
)
OPS = api.HeaderOps(set=(("x-mesh", "1"),), add=(("x-a", "b"),), remove=("x-debug",))
RETRY = api.RetryRule(
    attempts=4,
    per_try_timeout=0.5,
    retry_on=("5xx", "unavailable"),
    status_codes=(429,),
    backoff_base=0.01,
    backoff_max=0.1,
    retry_non_idempotent=True,
)
FAULT = api.FaultRule(
    delay=0.2,
    delay_percent=10.0,
    abort_status=503,
    abort_grpc="unavailable",
    abort_percent=5.0,
    headers=(HEADER,),
    path_prefix="/slow",
)
MIRROR = api.MirrorRule(version="v2", percent=5.0)
FORWARD = api.Forward(
    versions=(
        api.WeightedVersion(version="v1", weight=90),
        api.WeightedVersion(version="v2", weight=10),
    ),
    rewrite_prefix="/",
)
RULE = api.RouteRule(
    match=MATCH,
    action=FORWARD,
    timeout=2.0,
    retry=RETRY,
    fault=FAULT,
    mirror=MIRROR,
    request_headers=OPS,
    response_headers=OPS,
)
HEADER_CONDITION = authz.HeaderCondition(name="x-env", values=("dev",), not_values=("prod*",))
AUTHZ_RULE = authz.AuthzRule(
    principals=("spiffe://meshkit.local/ns/shop/sa/frontend",),
    not_principals=("spiffe://meshkit.local/ns/shop/sa/reviews",),
    namespaces=("shop",),
    not_namespaces=("other",),
    ip_blocks=("10.0.0.0/8",),
    not_ip_blocks=("10.1.0.0/16",),
    methods=("GET",),
    not_methods=("DELETE",),
    paths=("/api/*",),
    not_paths=("*.js",),
    headers=(HEADER_CONDITION,),
    request_principals=("https://auth.example/*",),
    not_request_principals=("https://auth.example/mallory",),
    claims=(authz.HeaderCondition(name="groups", values=("admin",)),),
)
BREAKER = api.BreakerLimits(max_connections=1, max_requests=3, max_retries=4)
OUTLIER = api.OutlierSettings(
    consecutive_errors=2, base_ejection=1.0, max_ejection=9.0, max_ejection_percent=100.0
)
BUDGET = api.BudgetSettings(percent=50.0, min_per_second=1.0, window=3.0)
HERE = Origin(file="Meshfile.py", line=7)

SAMPLES: dict[type[Any], Any] = {
    template.ForkRequest: template.ForkRequest(
        args=("--config-fd", "3"),
        env={"PATH": "/usr/bin"},
        cwd="/srv",
        fds=(3, 4),
        output=True,
        owner=("MESHKIT_OWNER", "run-1"),
    ),
    api.HeaderMatch: HEADER,
    api.QueryMatch: api.QueryMatch(name="q", kind="regex", value="[a-z]+"),
    api.RequestMatch: MATCH,
    api.HeaderOps: OPS,
    api.RetryRule: RETRY,
    api.FaultRule: FAULT,
    api.MirrorRule: MIRROR,
    api.WeightedVersion: api.WeightedVersion(version=None, weight=0),
    api.Forward: FORWARD,
    api.Redirect: api.Redirect(path="/new", host="example.test", status=308),
    api.DirectResponse: api.DirectResponse(status=204, body="gone"),
    api.RouteRule: RULE,
    api.RouteTable: api.RouteTable(
        service="catalog",
        rules=(RULE, api.RouteRule(action=api.DirectResponse(status=404)), api.RouteRule()),
    ),
    api.RuntimeFault: api.RuntimeFault(service="catalog", fault=FAULT, expires_at=1e9),
    api.BreakerLimits: BREAKER,
    api.OutlierSettings: OUTLIER,
    api.BudgetSettings: BUDGET,
    api.DestinationPolicy: api.DestinationPolicy(
        service="catalog",
        load_balancer="least_request",
        breaker=BREAKER,
        outlier=OUTLIER,
        retry_budget=BUDGET,
    ),
    api.RateLimit: api.RateLimit(
        service="catalog",
        max_tokens=20,
        tokens_per_fill=5,
        fill_interval=0.05,
        per="caller",
        match=MATCH,
        declared_at="Meshfile.py:9",
    ),
    spec.RateLimitSpec: spec.RateLimitSpec(
        service="catalog", max_tokens=1, tokens_per_fill=1, fill_interval=60.0, origin=HERE
    ),
    authz.HeaderCondition: HEADER_CONDITION,
    authz.AuthzRule: AUTHZ_RULE,
    authz.AuthzPolicy: authz.AuthzPolicy(
        name="no-reviews",
        service="catalog",
        action="DENY",
        rules=(AUTHZ_RULE, authz.AuthzRule()),
        origin="Meshfile.py:9",
    ),
    jwt.JwtRule: jwt.JwtRule(
        issuer="https://auth.example",
        audiences=("shop",),
        jwks='{"keys": [{"kty": "EC"}]}',
        origin="Meshfile.py:5",
    ),
    spec.RetrySpec: spec.RetrySpec(**attrs.asdict(RETRY, recurse=False), origin=HERE),
    spec.FaultSpec: spec.FaultSpec(**attrs.asdict(FAULT, recurse=False), origin=HERE),
    spec.MirrorSpec: spec.MirrorSpec(**attrs.asdict(MIRROR, recurse=False), origin=HERE),
    spec.BreakerSpec: spec.BreakerSpec(**attrs.asdict(BREAKER, recurse=False), origin=HERE),
    spec.OutlierSpec: spec.OutlierSpec(**attrs.asdict(OUTLIER, recurse=False), origin=HERE),
    spec.BudgetSpec: spec.BudgetSpec(**attrs.asdict(BUDGET, recurse=False), origin=HERE),
}


def _attrs_classes(module: ModuleType) -> list[type[Any]]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and attrs.has(value) and value.__module__ == module.__name__
    ]


def _modules(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    names = [package] + [
        info.name
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
        if not info.name.endswith(("__main__", ".child"))
    ]
    return [importlib.import_module(name) for name in names]


API_CLASSES = [cls for module in _modules("meshkit.api") for cls in _attrs_classes(module)]
OTHER_CLASSES = [
    cls
    for package in ("meshkit.dsl", "meshkit.proxy")
    for module in _modules(package)
    for cls in _attrs_classes(module)
]


def test_every_api_class_has_a_sample_with_no_default_left_untested() -> None:
    assert sorted(cls.__name__ for cls in API_CLASSES) == sorted(
        cls.__name__ for cls in SAMPLES if cls.__module__.startswith("meshkit.api")
    )


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda cls: cls.__name__)
def test_every_api_class_round_trips_through_both_converters(cls: type[Any]) -> None:
    sample = SAMPLES[cls]
    for converter in (convert.converter, wire.converter):
        assert converter.structure(converter.unstructure(sample), cls) == sample


def test_the_dsl_and_the_wire_share_one_converter() -> None:
    assert convert.converter is wire.converter is api_converter.converter


def _typed_fields(cls: type[Any]) -> set[tuple[str, str]]:
    hints = typing.get_type_hints(cls)
    return {(field.name, repr(hints[field.name])) for field in attrs.fields(cls)}


@pytest.mark.parametrize("cls", OTHER_CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_no_class_outside_the_api_redeclares_an_api_class(cls: type[Any]) -> None:
    own = _typed_fields(cls)
    for api_class in API_CLASSES:
        if issubclass(cls, api_class):
            added = {name for name, _ in own - _typed_fields(api_class)}
            assert added == {"origin"}, f"{cls.__name__} extends {api_class.__name__}: {added}"
        elif len(attrs.fields(api_class)) > 1:
            assert not _typed_fields(api_class) <= own, (
                f"{cls.__module__}.{cls.__name__} copies the fields of "
                f"meshkit.api.{api_class.__name__}: use or extend it"
            )


def _meshkit_imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (MESHKIT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return {name for name in found if name == "meshkit" or name.startswith("meshkit.")}


def _rooms(modules: set[str]) -> set[str]:
    return {".".join(name.split(".")[:2]) for name in modules}


def test_the_api_imports_nothing_of_meshkit() -> None:
    assert _rooms(_meshkit_imports("api")) <= {"meshkit.api"}


def test_the_dsl_imports_only_the_api() -> None:
    assert _rooms(_meshkit_imports("dsl")) <= {"meshkit.api", "meshkit.dsl"}


def test_the_proxy_imports_only_the_api_and_the_ca() -> None:
    assert _rooms(_meshkit_imports("proxy")) <= {"meshkit.api", "meshkit.ca", "meshkit.proxy"}


def test_one_grpc_status_table() -> None:
    assert api.GRPC_STATUS_CODES["unavailable"] == 14
    assert tuple(name for name in api.GRPC_STATUS_CODES if name != "ok") == api.GRPC_STATUS_NAMES
    users = [
        path
        for path in MESHKIT.rglob("*.py")
        if path.parent.name != "api" and '"data-loss"' in path.read_text(encoding="utf-8")
    ]
    assert users == []
