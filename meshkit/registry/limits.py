"""Rate limits as the sidecars apply them: the Meshfile's, and those set at runtime.

Pure: no I/O, no event loop.  ``declared_limits(spec)`` turns each
``mesh.rate_limit`` into the api's ``RateLimit``, its origin kept only as the
short ``declared_at`` (``Meshfile.py:12``) a refusal names.  ``LimitStore``
holds the limits set at runtime (``meshkit limit``, ``mesh.limit``), ids
``l1``, ``l2``, ..., each until it expires (an hour unless the request says
otherwise) or is cleared.  ``effective_limits`` is what every sidecar gets:
a runtime limit replaces a declared one on the same requests (same service,
route and ``per``), so clearing it restores the Meshfile's.

``limit_request`` validates the JSON body of ``POST /v1/limits``
(``{"service", "rate", "burst", "route", "per", "duration"}``; ``route`` is a
path prefix), with errors that name the field and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from meshkit.api import LIMIT_KEYS, RateLimit, RequestMatch
from meshkit.dsl.durations import DurationError, parse_duration
from meshkit.dsl.rates import RateError, parse_rate
from meshkit.dsl.spec import MeshSpec
from meshkit.registry.expiring import ExpiringStore
from meshkit.registry.faults import MAX_FAULT_DURATION, UnknownService
from meshkit.registry.routes import _without_origin

DEFAULT_LIMIT_DURATION = 3600.0
LIMIT_FIELDS = ("service", "rate", "burst", "route", "per", "duration")


class LimitRequestError(ValueError):
    """A limit request that cannot be applied; the message names the field."""


@attrs.frozen(kw_only=True)
class StoredLimit:
    """One limit set at runtime, in force on every sidecar until ``expires_at``."""

    id: str
    limit: RateLimit
    expires_at: float

    @property
    def service(self) -> str:
        return self.limit.service

    def to_dict(self, *, now: float) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/limits``."""
        return {
            "id": self.id,
            **limit_dict(self.limit),
            "expires_at": self.expires_at,
            "expires_in": max(0.0, self.expires_at - now),
        }


def limit_dict(limit: RateLimit) -> dict[str, Any]:
    """A limit for people and scripts: service, rate per second, burst, route, per."""
    return {
        "service": limit.service,
        "rate": limit.rate,
        "burst": limit.max_tokens,
        "route": None if limit.match is None else limit.match.path,
        "per": limit.per,
    }


class LimitStore(ExpiringStore[StoredLimit]):
    """The runtime limits in force (ids ``l1``, ``l2``, ...)."""

    def __init__(self, *, on_change: Callable[[], None] | None = None) -> None:
        super().__init__(prefix="l", on_change=on_change)

    def add(self, limit: RateLimit, *, expires_at: float) -> StoredLimit:
        def build(limit_id: str) -> StoredLimit:
            named = attrs.evolve(limit, declared_at=f"meshkit limit {limit_id}")
            return StoredLimit(id=limit_id, limit=named, expires_at=expires_at)

        return self.add_entry(build)


def declared_limits(spec: MeshSpec) -> tuple[RateLimit, ...]:
    """The Meshfile's limits in the api's vocabulary, each naming its line."""
    return tuple(
        attrs.evolve(
            _without_origin(limit, RateLimit),
            declared_at=f"{os.path.basename(limit.origin.file)}:{limit.origin.line}",
        )
        for limit in spec.rate_limits
    )


def effective_limits(
    declared: Iterable[RateLimit], store: LimitStore, now: float
) -> tuple[RateLimit, ...]:
    """What every sidecar applies: the declared limits, each replaced by the newest
    runtime limit on the same requests, then the runtime limits on requests none covers."""
    runtime: list[RateLimit] = []
    for stored in store.active(now):
        runtime = [held for held in runtime if not held.same_scope(stored.limit)]
        runtime.append(stored.limit)
    kept = [limit for limit in declared if not any(limit.same_scope(r) for r in runtime)]
    return (*kept, *runtime)


def limit_request(
    data: Mapping[str, Any], *, known_services: Iterable[str]
) -> tuple[RateLimit, float]:
    """The limit and its duration of a ``POST /v1/limits`` body.

    Raises ``LimitRequestError`` (a 400) for a malformed field and
    ``UnknownService`` (a 404) for a service the mesh does not run.
    """
    known = sorted(set(known_services))
    unexpected = sorted(set(data) - set(LIMIT_FIELDS))
    if unexpected:
        raise LimitRequestError(
            f"unknown field(s) {', '.join(map(repr, unexpected))}; a limit has "
            + ", ".join(map(repr, LIMIT_FIELDS))
        )
    service = data.get("service")
    if not isinstance(service, str) or not service:
        raise LimitRequestError("'service' must name a service of the mesh")
    if service not in known:
        raise UnknownService(service, known)
    try:
        count, period = parse_rate(data.get("rate"))
    except RateError as error:
        raise LimitRequestError(f"'rate': {error}") from None
    burst = data.get("burst")
    if burst is None:
        burst = count
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise LimitRequestError(f"'burst' must be a whole number of at least 1 (got {burst!r})")
    per = data.get("per") or "service"
    if per not in LIMIT_KEYS:
        raise LimitRequestError(f"'per' must be 'service' or 'caller' (got {per!r})")
    limit = RateLimit.from_rate(
        service, count, period, burst=burst, per=per, match=_route(data.get("route"))
    )
    return limit, _duration(data.get("duration"))


def _route(value: object) -> RequestMatch | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise LimitRequestError(f"'route' must be a path prefix starting with '/' (got {value!r})")
    return RequestMatch(path_kind="prefix", path=value)


def _duration(value: object) -> float:
    try:
        duration = DEFAULT_LIMIT_DURATION if value is None else parse_duration(value)
    except DurationError as error:
        raise LimitRequestError(f"'duration': {error}") from None
    if not 0 < duration <= MAX_FAULT_DURATION:
        raise LimitRequestError(
            f"'duration' must be more than 0 and at most {MAX_FAULT_DURATION / 3600:g}h "
            f"(got {duration:g}s)"
        )
    return duration
