"""Every traffic and resilience config class survives the wire (cattrs, JSON) unchanged."""

from __future__ import annotations

import json

import attrs
import cattrs
import pytest

from meshkit import api as rules
from meshkit.proxy.wire import converter

FULL_RULE = rules.RouteRule(
    match=rules.RequestMatch(
        path_kind="regex",
        path=r"^/items/\d+$",
        methods=("GET", "HEAD"),
        headers=(
            rules.HeaderMatch(name="x-user", kind="prefix", value="adm"),
            rules.HeaderMatch(name="x-gone", kind="absent"),
        ),
        query=(rules.QueryMatch(name="debug", value="1"),),
    ),
    action=rules.Forward(
        versions=(
            rules.WeightedVersion(version="v1", weight=90),
            rules.WeightedVersion(version="v2", weight=10),
        ),
        rewrite_prefix="/v1/items",
    ),
    timeout=2.0,
    retry=rules.RetryRule(
        attempts=3, per_try_timeout=0.5, retry_on=("5xx", "unavailable"), status_codes=(429,)
    ),
    fault=rules.FaultRule(
        delay=0.1,
        delay_percent=5.0,
        abort_grpc="unavailable",
        abort_percent=1.0,
        headers=(rules.HeaderMatch(name="x-chaos", value="1"),),
    ),
    mirror=rules.MirrorRule(version="v2", percent=20.0),
    request_headers=rules.HeaderOps(set=(("x-debug", "1"),), remove=("cookie",)),
    response_headers=rules.HeaderOps(add=(("x-served-by", "mesh"),)),
)

EXAMPLES: list[object] = [
    rules.HeaderMatch(name="x-a", kind="regex", value="a+"),
    rules.QueryMatch(name="p", kind="present"),
    rules.RequestMatch(),
    rules.HeaderOps(set=(("a", "b"),)),
    rules.RetryRule(),
    rules.FaultRule(abort_status=503, abort_percent=10.0),
    rules.MirrorRule(version=None),
    rules.WeightedVersion(version=None),
    rules.Forward(),
    rules.Redirect(path="/items", host="shop.local", status=308),
    rules.DirectResponse(status=403, body="admins only\n"),
    FULL_RULE,
    rules.RouteRule(action=rules.Redirect(path="/new", status=302)),
    rules.RouteRule(action=rules.DirectResponse(status=204)),
    rules.RouteTable(service="catalog", rules=(FULL_RULE, rules.RouteRule())),
    rules.BreakerLimits(max_connections=1, max_requests=3, max_retries=0),
    rules.OutlierSettings(consecutive_errors=2, base_ejection=1.0, max_ejection=5.0),
    rules.BudgetSettings(percent=50.0, min_per_second=0.0, window=1.0),
    rules.DestinationPolicy(service="catalog", load_balancer="least_request"),
    rules.RuntimeFault(
        service="catalog", fault=rules.FaultRule(delay=1.0, delay_percent=100.0), expires_at=1e9
    ),
    rules.RateLimit(
        service="catalog",
        max_tokens=2,
        tokens_per_fill=1,
        fill_interval=0.5,
        per="caller",
        match=rules.RequestMatch(path_kind="prefix", path="/items"),
        declared_at="Meshfile.py:3",
    ),
]


def test_every_config_class_has_an_example() -> None:
    classes = {
        value for value in vars(rules).values() if isinstance(value, type) and attrs.has(value)
    }
    assert classes == {type(example) for example in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: type(example).__name__)
def test_round_trip_through_json(example: object) -> None:
    text = json.dumps(converter.unstructure(example))
    assert converter.structure(json.loads(text), type(example)) == example


def test_actions_are_told_apart_by_kind() -> None:
    data = converter.unstructure(rules.RouteRule(action=rules.DirectResponse(status=418)))
    assert data["action"]["kind"] == "respond"
    data["action"] = {"kind": "redirect", "path": "/x", "host": None, "status": 307}
    assert converter.structure(data, rules.RouteRule).action == rules.Redirect(
        path="/x", status=307
    )


def test_a_bad_shape_is_refused() -> None:
    data = converter.unstructure(rules.RouteTable(service="catalog"))
    data["rules"][0]["action"] = {"kind": "teleport"}
    with pytest.raises(cattrs.BaseValidationError):
        converter.structure(data, rules.RouteTable)
