"""The local rate limit core on a fake clock: burst, refill, retry-after, keys, bounds."""

from __future__ import annotations

import pytest

from meshkit.api import RateLimit, RequestMatch, bucket_shape
from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.policy.ratelimit import RateLimiter, describe_match, describe_rate

FRONTEND = "spiffe://meshkit.local/ns/shop/sa/frontend"
REVIEWS = "spiffe://meshkit.local/ns/shop/sa/reviews"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def head(path: str = "/items", method: str = "GET") -> RequestHead:
    return RequestHead(method=method.encode(), target=path.encode(), headers=[])


def limit(
    count: int = 10, period: float = 1.0, burst: int | None = None, **more: object
) -> RateLimit:
    tokens, interval = bucket_shape(count, period)
    return RateLimit(
        service=str(more.pop("service", "catalog")),
        max_tokens=count if burst is None else burst,
        tokens_per_fill=tokens,
        fill_interval=interval,
        declared_at="Meshfile.py:12",
        **more,  # type: ignore[arg-type]
    )


def admitted(
    limiter: RateLimiter, n: int, *, identity: str | None = None, path: str = "/items"
) -> int:
    return sum(limiter.check("catalog", head(path), identity) is None for _ in range(n))


@pytest.mark.parametrize(
    ("count", "period", "tokens", "interval"),
    [
        (100, 1.0, 5, 0.05),
        (10, 1.0, 1, 0.1),
        (30, 1.0, 2, 2 / 30),
        (1000, 1.0, 50, 0.05),
        (5, 60.0, 1, 12.0),
        (1, 1.0, 1, 1.0),
    ],
)
def test_bucket_shape_is_exact_with_fills_of_at_least_50ms(
    count: int, period: float, tokens: int, interval: float
) -> None:
    assert bucket_shape(count, period) == (tokens, pytest.approx(interval))
    shaped_tokens, shaped_interval = bucket_shape(count, period)
    assert shaped_tokens / shaped_interval == pytest.approx(count / period)


@pytest.mark.parametrize(("count", "period"), [(0, 1.0), (-1, 1.0), (5, 0.0)])
def test_bucket_shape_refuses_empty_rates(count: int, period: float) -> None:
    with pytest.raises(ValueError, match="a rate needs"):
        bucket_shape(count, period)


def test_a_burst_up_to_max_tokens_then_refusal_with_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    rule = limit(10, 1.0, burst=20)
    limiter.sync([rule])
    assert admitted(limiter, 25) == 20
    refused = limiter.check("catalog", head(), None)
    assert refused is not None
    assert refused.limit == rule
    assert refused.retry_after == 1  # the next fill is 100 ms away: rounded up to 1 s
    assert refused.reason == "rate limit 10/s burst 20 on 'catalog' exceeded (Meshfile.py:12)"


def test_refill_is_discrete_and_never_above_max_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.sync([limit(10, 1.0, burst=5)])
    assert admitted(limiter, 10) == 5
    clock.now += 0.099  # not a whole fill interval yet
    assert admitted(limiter, 1) == 0
    clock.now += 0.002  # one fill of one token
    assert admitted(limiter, 3) == 1
    clock.now += 0.35  # three more fills (the fourth is 0.05 s away)
    assert admitted(limiter, 5) == 3
    clock.now += 3600  # a long pause fills the bucket, no more
    assert admitted(limiter, 10) == 5


def test_retry_after_counts_whole_seconds_to_the_next_fill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.sync([limit(5, 60.0)])  # one token every 12 s
    assert admitted(limiter, 5) == 5
    clock.now += 2.5
    refused = limiter.check("catalog", head(), None)
    assert refused is not None and refused.retry_after == 10  # 9.5 s, rounded up
    assert describe_rate(refused.limit) == "5/m burst 5"
    clock.now += 9.5
    assert limiter.check("catalog", head(), None) is None


def test_a_refused_request_takes_no_token_from_the_other_limits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    service_wide = limit(100, 1.0, burst=3)
    route = limit(10, 1.0, burst=1, match=RequestMatch(path_kind="prefix", path="/slow"))
    limiter.sync([service_wide, route])
    assert admitted(limiter, 1, path="/slow") == 1
    refused = limiter.check("catalog", head("/slow/x"), None)
    assert refused is not None and refused.limit == route
    assert "route /slow* of 'catalog'" in refused.reason
    # The route's refusal took nothing from the service-wide bucket: 2 are left.
    assert admitted(limiter, 5, path="/fast") == 2


def test_limits_of_other_services_and_other_routes_do_not_apply() -> None:
    limiter = RateLimiter(clock=FakeClock())
    limiter.sync(
        [
            limit(1, 1.0, service="reviews"),
            limit(1, 1.0, match=RequestMatch(path_kind="exact", path="/admin", methods=("POST",))),
        ]
    )
    assert admitted(limiter, 10) == 10
    assert sum(limiter.check("catalog", head("/admin", "GET"), None) is None for _ in range(5)) == 5
    assert (
        sum(limiter.check("catalog", head("/admin", "POST"), None) is None for _ in range(5)) == 1
    )


def test_per_caller_buckets_isolate_callers() -> None:
    limiter = RateLimiter(clock=FakeClock())
    limiter.sync([limit(2, 1.0, per="caller")])
    assert admitted(limiter, 5, identity=FRONTEND) == 2
    assert admitted(limiter, 5, identity=REVIEWS) == 2
    assert admitted(limiter, 5) == 2  # every unauthenticated caller shares one bucket
    refused = limiter.check("catalog", head(), FRONTEND)
    assert refused is not None and "for caller 'frontend'" in refused.reason


def test_per_caller_keys_are_bounded_least_recently_used_first() -> None:
    limiter = RateLimiter(clock=FakeClock(), max_keys=3)
    rule = limit(1, 1.0, per="caller")
    limiter.sync([rule])
    for n in range(1000):
        limiter.check("catalog", head(), f"spiffe://meshkit.local/ns/shop/sa/caller{n}")
    assert limiter.buckets_held(rule) == 3
    limiter.sync([rule])
    assert admitted(limiter, 2, identity=FRONTEND) == 1
    for n in range(2):
        limiter.check("catalog", head(), f"spiffe://x/{n}")
    assert admitted(limiter, 1, identity=FRONTEND) == 0  # recently used: still remembered
    for n in range(3):
        limiter.check("catalog", head(), f"spiffe://y/{n}")
    assert limiter.buckets_held(rule) == 3
    assert admitted(limiter, 1, identity=FRONTEND) == 1  # forgotten: starts full again


def test_sync_keeps_the_buckets_of_kept_limits_and_a_changed_limit_starts_full() -> None:
    limiter = RateLimiter(clock=FakeClock())
    rule = limit(2, 1.0)
    limiter.sync([rule])
    assert admitted(limiter, 5) == 2
    limiter.sync([rule, limit(1, 1.0, service="reviews")])
    assert admitted(limiter, 1) == 0
    limiter.sync([limit(3, 1.0)])
    assert admitted(limiter, 5) == 3
    limiter.sync([])
    assert admitted(limiter, 50) == 50


def test_a_bad_route_regex_is_refused_at_sync() -> None:
    limiter = RateLimiter(clock=FakeClock())
    with pytest.raises(ValueError, match="path_regex"):
        limiter.sync([limit(match=RequestMatch(path_kind="regex", path="(unclosed"))])


def test_describe_match() -> None:
    rule = limit(match=RequestMatch(path_kind="prefix", path="/items", methods=("GET", "HEAD")))
    assert describe_match(rule) == "GET|HEAD /items*"
    assert describe_match(limit()) == "*"
