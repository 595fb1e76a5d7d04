"""Route matching, weighted splits, rewrites, redirects and local replies (pure, no sockets)."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.api import (
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
from meshkit.proxy.codec.messages import Headers, RequestHead
from meshkit.proxy.policy.flags import FLAG_HEADER, REASON_HEADER, flags_of, local_reply
from meshkit.proxy.policy.matching import RouteMatcher, compile_tables, split_target
from meshkit.proxy.policy.rewrite import apply_header_ops, redirect_location, rewrite_target
from meshkit.proxy.policy.split import WeightedChoice, chance


def head(target: str = "/", method: str = "GET", headers: Headers | None = None) -> RequestHead:
    return RequestHead(method=method.encode(), target=target.encode(), headers=headers or [])


def rule(name: str, match: RequestMatch) -> RouteRule:
    return RouteRule(match=match, action=Forward(versions=(WeightedVersion(version=name),)))


def chosen(matcher: RouteMatcher, request: RequestHead) -> str | None:
    found = matcher.first_match(request)
    if found is None:
        return None
    assert isinstance(found.action, Forward)
    return found.action.versions[0].version


def table(*rules: RouteRule) -> RouteMatcher:
    return RouteMatcher(RouteTable(service="catalog", rules=rules))


def test_first_match_wins_and_no_match_is_none() -> None:
    matcher = table(
        rule("a", RequestMatch(path_kind="prefix", path="/items")),
        rule("b", RequestMatch(path_kind="exact", path="/items/1")),
    )
    assert chosen(matcher, head("/items/1")) == "a"
    assert chosen(matcher, head("/other")) is None
    assert chosen(table(rule("any", RequestMatch())), head("/whatever?x=1")) == "any"


@pytest.mark.parametrize(
    ("match", "request_head", "expected"),
    [
        (RequestMatch(path_kind="exact", path="/a"), head("/a?x=1"), True),
        (RequestMatch(path_kind="exact", path="/a"), head("/a/"), False),
        (RequestMatch(path_kind="prefix", path="/api"), head("/api/v1"), True),
        (RequestMatch(path_kind="prefix", path="/api"), head("/ap"), False),
        (RequestMatch(path_kind="regex", path=r"/items/\d+"), head("/items/42"), True),
        (RequestMatch(path_kind="regex", path=r"/items/\d+"), head("/items/42/x"), False),
        (RequestMatch(path_kind="regex", path=r"^/items/\d+$"), head("/items/7?debug=1"), True),
        (RequestMatch(methods=("POST", "PUT")), head(method="POST"), True),
        (RequestMatch(methods=("POST",)), head(method="GET"), False),
    ],
)
def test_path_and_method_matchers(
    match: RequestMatch, request_head: RequestHead, expected: bool
) -> None:
    assert (chosen(table(rule("x", match)), request_head) == "x") is expected


@pytest.mark.parametrize(
    ("condition", "headers", "expected"),
    [
        (HeaderMatch(name="x-canary", value="1"), [(b"x-canary", b"1")], True),
        (HeaderMatch(name="x-canary", value="1"), [(b"x-canary", b"10")], False),
        (HeaderMatch(name="x-canary", value="1"), [], False),
        (HeaderMatch(name="x-user", kind="prefix", value="adm"), [(b"x-user", b"admin")], True),
        (HeaderMatch(name="x-user", kind="prefix", value="adm"), [(b"x-user", b"bob")], False),
        (HeaderMatch(name="x-id", kind="regex", value=r"\d+"), [(b"x-id", b"123")], True),
        (HeaderMatch(name="x-id", kind="regex", value=r"\d+"), [(b"x-id", b"12a")], False),
        (HeaderMatch(name="x-a", kind="present"), [(b"x-a", b"")], True),
        (HeaderMatch(name="x-a", kind="present"), [], False),
        (HeaderMatch(name="x-a", kind="absent"), [], True),
        (HeaderMatch(name="x-a", kind="absent"), [(b"x-a", b"1")], False),
        (HeaderMatch(name="x-m", value="a,b"), [(b"x-m", b"a"), (b"x-m", b"b")], True),
    ],
)
def test_header_matchers(condition: HeaderMatch, headers: Headers, expected: bool) -> None:
    matcher = table(rule("x", RequestMatch(headers=(condition,))))
    assert (chosen(matcher, head(headers=headers)) == "x") is expected


@pytest.mark.parametrize(
    ("condition", "target", "expected"),
    [
        (QueryMatch(name="debug", value="1"), "/?debug=1", True),
        (QueryMatch(name="debug", value="1"), "/?debug=0&debug=1", True),
        (QueryMatch(name="debug", value="1"), "/?debug=2", False),
        (QueryMatch(name="debug", value="1"), "/", False),
        (QueryMatch(name="q", kind="regex", value="a.*"), "/?q=abc", True),
        (QueryMatch(name="q", kind="regex", value="a.*"), "/?q=ba", False),
        (QueryMatch(name="p", kind="present"), "/?p", True),
        (QueryMatch(name="p", kind="present"), "/?q=1", False),
    ],
)
def test_query_matchers(condition: QueryMatch, target: str, expected: bool) -> None:
    matcher = table(rule("x", RequestMatch(query=(condition,))))
    assert (chosen(matcher, head(target)) == "x") is expected


def test_every_condition_of_a_match_must_hold() -> None:
    match = RequestMatch(
        path_kind="prefix",
        path="/admin",
        methods=("POST",),
        headers=(HeaderMatch(name="x-user", kind="prefix", value="adm"),),
    )
    matcher = table(rule("admin", match), rule("rest", RequestMatch()))
    admin = [(b"x-user", b"admin")]
    assert chosen(matcher, head("/admin/x", "POST", admin)) == "admin"
    assert chosen(matcher, head("/admin/x", "GET", admin)) == "rest"
    assert chosen(matcher, head("/admin/x", "POST", [])) == "rest"
    assert chosen(matcher, head("/other", "POST", admin)) == "rest"


def test_a_bad_pattern_is_refused_when_the_table_is_compiled() -> None:
    bad = RouteTable(
        service="catalog", rules=(rule("x", RequestMatch(path_kind="regex", path="(")),)
    )
    with pytest.raises(ValueError, match=r"path_regex '\(' is not a valid regular expression"):
        compile_tables([bad])


def test_split_target() -> None:
    assert split_target(b"/a/b?x=1&y") == ("/a/b", "x=1&y")
    assert split_target(b"/a") == ("/a", "")


def test_a_90_10_split_over_ten_thousand_seeded_draws() -> None:
    choice = WeightedChoice(
        (WeightedVersion(version="v1", weight=90), WeightedVersion(version="v2", weight=10))
    )
    rng = random.Random(7)
    draws = [choice.choose(rng) for _ in range(10_000)]
    assert 0.885 <= draws.count("v1") / 10_000 <= 0.915
    assert set(draws) == {"v1", "v2"}
    again = random.Random(7)
    assert [choice.choose(again) for _ in range(10_000)] == draws


@given(
    weights=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=5).filter(
        lambda w: sum(w) > 0
    ),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_split_never_chooses_a_zero_weight(weights: list[int], seed: int) -> None:
    versions = [WeightedVersion(version=f"v{i}", weight=w) for i, w in enumerate(weights)]
    choice = WeightedChoice(versions)
    rng = random.Random(seed)
    allowed = {f"v{i}" for i, w in enumerate(weights) if w > 0}
    assert all(choice.choose(rng) in allowed for _ in range(50))


def test_a_split_needs_a_positive_weight_and_one_version_needs_no_draw() -> None:
    with pytest.raises(ValueError, match="positive weight"):
        WeightedChoice((WeightedVersion(version="v1", weight=0),))
    rng = random.Random(1)
    state = rng.getstate()
    assert WeightedChoice((WeightedVersion(version=None),)).choose(rng) is None
    assert rng.getstate() == state


def test_chance_bounds() -> None:
    rng = random.Random(3)
    assert not any(chance(0, rng) for _ in range(1000))
    assert all(chance(100, rng) for _ in range(1000))
    hits = sum(chance(20, rng) for _ in range(10_000))
    assert 1850 <= hits <= 2150


def test_header_ops_remove_then_set_then_add() -> None:
    headers: Headers = [
        (b"host", b"catalog"),
        (b"cookie", b"a"),
        (b"x-debug", b"0"),
        (b"x-debug", b"2"),
        (b"x-keep", b"1"),
    ]
    ops = HeaderOps(
        set=(("X-Debug", "1"), ("x-new", "n")), add=(("x-keep", "2"),), remove=("Cookie",)
    )
    assert apply_header_ops(headers, ops) == [
        (b"host", b"catalog"),
        (b"x-debug", b"1"),
        (b"x-keep", b"1"),
        (b"x-new", b"n"),
        (b"x-keep", b"2"),
    ]
    assert apply_header_ops(headers, HeaderOps()) == headers


@pytest.mark.parametrize(
    ("target", "match", "prefix", "expected"),
    [
        (b"/api/items?x=1", RequestMatch(path_kind="prefix", path="/api"), "/v1", b"/v1/items?x=1"),
        (b"/api/items", RequestMatch(path_kind="prefix", path="/api/"), "/", b"/items"),
        (b"/api/items", RequestMatch(path_kind="prefix", path="/api"), "/", b"/items"),
        (b"/old", RequestMatch(path_kind="exact", path="/old"), "/new", b"/new"),
        (
            b"/items/42?d=1",
            RequestMatch(path_kind="regex", path=r"/items/\d+"),
            "/v1/items",
            b"/v1/items?d=1",
        ),
    ],
)
def test_prefix_rewrite(target: bytes, match: RequestMatch, prefix: str, expected: bytes) -> None:
    assert rewrite_target(target, match, prefix) == expected


def test_redirect_location() -> None:
    headers: Headers = [(b"host", b"shop.local:8080")]
    assert redirect_location(b"/old?a=1", headers, Redirect(path="/items")) == (
        b"http://shop.local:8080/items?a=1"
    )
    assert redirect_location(b"/x", headers, Redirect(host="other"), scheme="https") == (
        b"https://other/x"
    )
    assert redirect_location(b"/x", [], Redirect(path="/y")) == b"/y"


def test_local_reply_carries_flag_reason_and_a_readable_body() -> None:
    headers, body = local_reply(503, "UO", "circuit breaker open\r\nfor 'catalog'")
    assert body == b"circuit breaker open??for 'catalog' (UO)\n"
    assert (FLAG_HEADER, b"UO") in headers
    assert (REASON_HEADER, b"circuit breaker open??for 'catalog'") in headers
    assert (b"content-length", str(len(body)).encode()) in headers
    extra_headers, _ = local_reply(301, "", "moved", extra=[(b"location", b"/items")])
    assert (b"location", b"/items") in extra_headers
    assert all(name != FLAG_HEADER for name, _ in extra_headers)
    assert flags_of("DI", "FI") == "DI,FI"
    assert flags_of("", "") == "-"


def test_a_catastrophic_backtracking_pattern_completes_in_linear_time() -> None:
    # Python's re takes about 2**40 steps for this; RE2 answers at once.
    table = RouteTable(
        service="catalog",
        rules=(rule("x", RequestMatch(path_kind="regex", path="/(a+)+$")),),
    )
    matcher = compile_tables([table])["catalog"]
    started = time.perf_counter()
    assert chosen(matcher, head("/" + "a" * 40 + "b", "GET", [])) is None
    assert chosen(matcher, head("/" + "a" * 100_000 + "b", "GET", [])) is None
    assert chosen(matcher, head("/" + "a" * 40, "GET", [])) == "x"
    # Generous for a loaded machine; backtracking would take hours.
    assert time.perf_counter() - started < 5.0
