"""Reading ``mesh.rate_limit(...)``: a local token bucket on the requests to a service.

    mesh.rate_limit("catalog", "100/s", burst=20)                    # the whole service
    mesh.rate_limit("catalog", "5/s", route=match(path_prefix="/search"))
    mesh.rate_limit("catalog", "10/s", per="caller")                 # each caller its own

The rate becomes Envoy's bucket (``meshkit.api.bucket_shape``); ``burst`` is
``max_tokens`` (the rate's count when omitted).  Whether the service exists
and the route's conditions make sense is decided by ``meshkit.dsl.checks.traffic``.
"""

from __future__ import annotations

from meshkit.api import LIMIT_KEYS, LimitKey, RequestMatch
from meshkit.dsl.checks.problems import Problem, describe_value
from meshkit.dsl.rates import RateError, parse_rate
from meshkit.dsl.spec import Origin, RateLimitSpec
from meshkit.dsl.verbs.reader import ArgumentReader
from meshkit.dsl.verbs.traffic import Match


def declare_rate_limit(
    *, origin: Origin, service: str, rate: object, burst: object, per: object, route: object
) -> tuple[RateLimitSpec, list[Problem]]:
    """The ``RateLimitSpec`` of one ``mesh.rate_limit(...)`` call and every mistake in it."""
    reader = ArgumentReader(origin=origin, subject=f"rate_limit {service!r}")
    count, period = 1, 1.0
    try:
        count, period = parse_rate(rate)
    except RateError as error:
        reader.fail(str(error))
    max_tokens = count
    if burst is not None:
        max_tokens = reader.integer("burst", burst, fallback=count)
        if max_tokens < 1:
            reader.fail(f"burst must be at least 1 (the bucket's size), got {max_tokens}")
            max_tokens = count
    key: LimitKey = "caller" if reader.choice("per", per, LIMIT_KEYS) == "caller" else "service"
    match: RequestMatch | None = None
    problems: list[Problem] = []
    if isinstance(route, Match):
        match, problems = route.spec, list(route.problems)
    elif route is not None:
        reader.fail(f"route must be match(...), got {describe_value(route)}")
    spec = RateLimitSpec.from_rate(
        service, count, period, burst=max_tokens, per=key, match=match, origin=origin
    )
    return spec, [*reader.problems, *problems]
