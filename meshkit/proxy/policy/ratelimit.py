"""Local rate limiting: whether a request to this instance's service is admitted.

Envoy's local rate limit, as a pure object with an injected clock: each
``RateLimit`` is a token bucket that starts full (``max_tokens``) and gets
``tokens_per_fill`` tokens back at every whole ``fill_interval`` since its last
fill (discrete fills, as Envoy's timer gives them).  A request takes one token
from every limit that applies to it (the service's, its route's, its caller's);
when one of them is empty nothing is taken and the request is refused with the
seconds until that bucket's next fill (``retry-after``, rounded up).

Limits ``per="caller"`` keep one bucket per verified caller identity.  That key
space is the peer's to choose, so each limit keeps at most ``max_keys`` buckets
and forgets the least recently used one to make room: memory stays bounded,
and a forgotten caller starts again with a full bucket (as a caller new to
this instance would).

Buckets live as long as their limit is in the config: a reload that keeps a
limit keeps its buckets, a changed limit (another rate, a runtime override)
starts full.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import attrs

from meshkit.api import RateLimit, RouteRule, RouteTable
from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.policy.matching import RouteMatcher

DEFAULT_MAX_KEYS = 1024
UNAUTHENTICATED = "-"
"""The one bucket key of every caller without a verified identity (plaintext, permissive)."""


class TokenBucket:
    """The tokens one limit holds for one key; the limit itself is passed to each call."""

    __slots__ = ("last_fill", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.tokens = limit.max_tokens
        self.last_fill = now

    def refill(self, limit: RateLimit, now: float) -> None:
        """Add the fills that came due since the last one (never above ``max_tokens``)."""
        fills = math.floor((now - self.last_fill) / limit.fill_interval)
        if fills > 0:
            self.tokens = min(limit.max_tokens, self.tokens + fills * limit.tokens_per_fill)
            self.last_fill += fills * limit.fill_interval

    def seconds_to_next_fill(self, limit: RateLimit, now: float) -> float:
        return max(0.0, self.last_fill + limit.fill_interval - now)


@attrs.frozen(kw_only=True)
class RateLimited:
    """A refused request: the limit that refused it, and when to come back."""

    limit: RateLimit
    caller: str
    retry_after: int

    @property
    def reason(self) -> str:
        """One sentence for ``x-meshkit-reason``: which limit, declared where."""
        limit = self.limit
        scope = f"'{limit.service}'"
        if limit.match is not None:
            scope = f"route {describe_match(limit)} of {scope}"
        # A SPIFFE ID's last segment is the caller's service name.
        who = f" for caller '{self.caller.rpartition('/')[2]}'" if limit.per == "caller" else ""
        where = f" ({limit.declared_at})" if limit.declared_at else ""
        return f"rate limit {describe_rate(limit)} on {scope}{who} exceeded{where}"


def describe_rate(limit: RateLimit) -> str:
    """``10/s burst 20``: the limit's rate and bucket size as people write them."""
    per_second = limit.tokens_per_fill / limit.fill_interval
    if per_second >= 1:
        rate = f"{per_second:.4g}/s"
    elif per_second * 60 >= 1:
        rate = f"{per_second * 60:.4g}/m"
    else:
        rate = f"{per_second * 3600:.4g}/h"
    return f"{rate} burst {limit.max_tokens}"


def describe_match(limit: RateLimit) -> str:
    """The route a limit narrows to, briefly (``GET /items*``)."""
    match = limit.match
    if match is None:
        return "*"
    path = {"any": "*", "exact": match.path, "prefix": match.path + "*"}.get(
        match.path_kind, f"~{match.path}"
    )
    methods = "|".join(match.methods)
    extra = " +headers" if match.headers or match.query else ""
    return f"{methods + ' ' if methods else ''}{path}{extra}"


def _route_matcher(limit: RateLimit) -> RouteMatcher:
    assert limit.match is not None
    rule = RouteRule(match=limit.match)
    return RouteMatcher(RouteTable(service=limit.service, rules=(rule,)))


def validate_limits(limits: Sequence[RateLimit]) -> None:
    """``ValueError`` naming the first limit a sidecar cannot apply."""
    for limit in limits:
        if limit.max_tokens < 1 or limit.tokens_per_fill < 1 or not limit.fill_interval > 0:
            raise ValueError(f"rate limit on '{limit.service}' has an empty bucket: {limit}")
        if limit.match is not None:
            _route_matcher(limit)


def caller_key(limit: RateLimit, identity: str | None) -> str:
    """The bucket of ``identity`` under ``limit``: one per caller, or one for all."""
    if limit.per != "caller":
        return ""
    return identity or UNAUTHENTICATED


class _Enforced:
    """One limit as applied: its route matcher and its buckets (looked up once per config)."""

    __slots__ = ("buckets", "limit", "matcher")

    def __init__(
        self, limit: RateLimit, matcher: RouteMatcher | None, buckets: OrderedDict[str, TokenBucket]
    ) -> None:
        self.limit = limit
        self.matcher = matcher
        self.buckets = buckets


class RateLimiter:
    """The buckets of one sidecar; ``clock`` is monotonic seconds (injectable)."""

    def __init__(self, *, clock: Callable[[], float], max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._limits: tuple[RateLimit, ...] = ()
        self._enforced: dict[RateLimit, _Enforced] = {}
        # Per service, so a request looks at its own service's limits only.
        self._by_service: dict[str, list[_Enforced]] = {}

    def sync(self, limits: Sequence[RateLimit]) -> None:
        """Apply a config's limits: buckets of limits kept stay, the others go.

        ``ValueError`` (naming the pattern) when a limit's route has a bad regex.
        """
        if limits is self._limits:
            return  # the snapshot last synced: every request of a config asks again
        limits = tuple(limits)
        if limits == self._limits:
            self._limits = limits
            return
        enforced: dict[RateLimit, _Enforced] = {}
        by_service: dict[str, list[_Enforced]] = {}
        for limit in limits:
            kept = self._enforced.get(limit) or enforced.get(limit)
            if kept is None:
                matcher = None if limit.match is None else _route_matcher(limit)
                kept = _Enforced(limit, matcher, OrderedDict())
            enforced[limit] = kept
            by_service.setdefault(limit.service, []).append(kept)
        self._limits, self._enforced, self._by_service = limits, enforced, by_service

    def buckets_held(self, limit: RateLimit) -> int:
        """How many keys ``limit`` keeps a bucket for (bounded by ``max_keys``)."""
        enforced = self._enforced.get(limit)
        return 0 if enforced is None else len(enforced.buckets)

    def check(self, service: str, head: RequestHead, identity: str | None) -> RateLimited | None:
        """Admit one request to ``service`` (taking a token of every limit on it) or refuse it."""
        applicable = self._by_service.get(service)
        if not applicable:
            return None
        now = self._clock()
        taking: list[TokenBucket] = []
        for enforced in applicable:
            if enforced.matcher is not None and enforced.matcher.first_match(head) is None:
                continue
            limit = enforced.limit
            key = caller_key(limit, identity)
            bucket = self._bucket(enforced, key, now)
            bucket.refill(limit, now)
            if bucket.tokens < 1:
                wait = bucket.seconds_to_next_fill(limit, now)
                return RateLimited(limit=limit, caller=key, retry_after=max(1, math.ceil(wait)))
            taking.append(bucket)
        for bucket in taking:
            bucket.tokens -= 1
        return None

    def _bucket(self, enforced: _Enforced, key: str, now: float) -> TokenBucket:
        buckets = enforced.buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)
            bucket = buckets[key] = TokenBucket(enforced.limit, now)
        elif len(buckets) > 1:
            buckets.move_to_end(key)
        return bucket
