"""The per-request cost of the local rate limit check, on the pure core.

    python benchmarks/ratelimit.py [--requests 200000] [--rounds 5]

What the inbound sidecar does per request (``RateLimiter.sync`` with the
config's snapshot, then ``check``), for: no limits (the baseline every
sidecar pays), one service-wide limit, and three limits (service-wide, a
route ``match``, per caller with 1000 callers taking turns).  Buckets are
large enough that every request is admitted, so each takes its tokens.
Prints the median microseconds per request of ``--rounds`` rounds, and the
cost over the baseline.  Not a test; CI does not run it.
"""

from __future__ import annotations

import time

from meshbench.percall import compare

from meshkit.api import RateLimit, RequestMatch
from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.policy.ratelimit import RateLimiter

BIG = 10**9


def _limits(kind: str) -> tuple[RateLimit, ...]:
    service = RateLimit.from_rate("catalog", BIG, 1.0, burst=BIG)
    if kind == "none":
        return ()
    if kind == "one":
        return (service,)
    route = RateLimit.from_rate(
        "catalog", BIG, 1.0, burst=BIG, match=RequestMatch(path_kind="prefix", path="/items")
    )
    caller = RateLimit.from_rate("catalog", BIG, 1.0, burst=BIG, per="caller")
    return (service, route, caller)


def _round(kind: str, requests: int) -> float:
    limits = _limits(kind)
    limiter = RateLimiter(clock=time.monotonic)
    head = RequestHead(method=b"GET", target=b"/items/42?x=1", headers=[(b"host", b"catalog")])
    callers = [f"spiffe://meshkit.local/ns/shop/sa/caller{n}" for n in range(1000)]
    started = time.perf_counter()
    for n in range(requests):
        limiter.sync(limits)
        assert limiter.check("catalog", head, callers[n % 1000]) is None
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    compare(__doc__.splitlines()[0], "limits", ("none", "one", "three"), _round, requests=200_000)


if __name__ == "__main__":
    main()
