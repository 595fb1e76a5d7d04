"""Runtime faults held by the control plane (``meshkit fault``, ``mesh.fault``).

Pure: no I/O, no event loop, no clock of its own.  ``FaultStore`` (an
``ExpiringStore``) keeps each injected fault under an id (``f1``, ``f2``, ...)
with its wall-clock expiry; the compile step copies the unexpired ones into
every sidecar's ``ProxyConfig.runtime_faults``; the control plane drops expired
ones so they leave the configs too.  ``fault_request``
turns the JSON body of ``POST /v1/faults`` into a ``FaultRequest``, with
errors that name the field and what it accepts.

Every fault expires: ``DEFAULT_FAULT_DURATION`` unless the request says
otherwise, so a fault a test or a person forgot does not outlive the day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from meshkit.api import GRPC_STATUS_NAMES, FaultRule, HeaderMatch, RuntimeFault
from meshkit.dsl.durations import DurationError, parse_duration
from meshkit.registry.expiring import ExpiringStore

DEFAULT_FAULT_DURATION = 300.0
MAX_FAULT_DURATION = 24 * 3600.0


class FaultRequestError(ValueError):
    """A fault request that cannot be applied; the message names the field."""


@attrs.frozen(kw_only=True)
class StoredFault:
    """One injected fault: its id, and the rule every sidecar applies until it expires."""

    id: str
    fault: RuntimeFault

    @property
    def service(self) -> str:
        return self.fault.service

    @property
    def expires_at(self) -> float:
        return self.fault.expires_at

    def to_dict(self, *, now: float) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/faults`` and of the status document's ``faults``."""
        rule = self.fault.fault
        abort: int | str | None = rule.abort_status
        if rule.abort_grpc is not None:
            abort = rule.abort_grpc
        return {
            "id": self.id,
            "service": self.service,
            "abort": abort,
            "delay": rule.delay if rule.delay > 0 else None,
            "percent": max(rule.abort_percent, rule.delay_percent),
            "path_prefix": rule.path_prefix,
            "headers": {match.name: match.value for match in rule.headers} or None,
            "expires_at": self.expires_at,
            "expires_in": max(0.0, self.expires_at - now),
        }


@attrs.frozen(kw_only=True)
class FaultRequest:
    """A validated ``POST /v1/faults`` body: which service, what rule, for how long."""

    service: str
    rule: FaultRule
    duration: float


class FaultStore(ExpiringStore[StoredFault]):
    """The faults in force (ids ``f1``, ``f2``, ...)."""

    def __init__(self, *, on_change: Callable[[], None] | None = None) -> None:
        super().__init__(prefix="f", on_change=on_change)

    def add(self, service: str, rule: FaultRule, *, expires_at: float) -> StoredFault:
        fault = RuntimeFault(service=service, fault=rule, expires_at=expires_at)
        return self.add_entry(lambda fault_id: StoredFault(id=fault_id, fault=fault))


def runtime_faults(store: FaultStore, now: float) -> tuple[RuntimeFault, ...]:
    """What the compile step puts into every ``ProxyConfig.runtime_faults``."""
    return tuple(stored.fault for stored in store.active(now))


def fault_request(data: Mapping[str, Any], *, known_services: Iterable[str]) -> FaultRequest:
    """Validate a ``POST /v1/faults`` body (see ``meshkit.registry.server.faults``).

    Raises ``FaultRequestError`` (a 400) for a malformed field and
    ``UnknownService`` (a 404) for a service the mesh does not run.
    """
    known = sorted(set(known_services))
    unexpected = sorted(
        set(data) - {"service", "abort", "delay", "percent", "path_prefix", "headers", "duration"}
    )
    if unexpected:
        raise FaultRequestError(
            f"unknown field(s) {', '.join(map(repr, unexpected))}; a fault has "
            "'service', 'abort', 'delay', 'percent', 'path_prefix', 'headers' and 'duration'"
        )
    service = data.get("service")
    if not isinstance(service, str) or not service:
        raise FaultRequestError("'service' must name a service of the mesh")
    if service not in known:
        raise UnknownService(service, known)
    abort_status, abort_grpc = _abort(data.get("abort"))
    delay = _seconds(data.get("delay"), field="delay", default=0.0)
    if delay < 0:
        raise FaultRequestError(f"'delay' must not be negative (got {delay:g}s)")
    if delay == 0 and abort_status is None and abort_grpc is None:
        raise FaultRequestError("a fault needs an 'abort' (a status or gRPC code) or a 'delay'")
    percent = _percent(data.get("percent", 100))
    path_prefix = data.get("path_prefix")
    if path_prefix is not None and (
        not isinstance(path_prefix, str) or not path_prefix.startswith("/")
    ):
        raise FaultRequestError(
            f"'path_prefix' must be a path prefix starting with '/' (got {path_prefix!r})"
        )
    duration = _seconds(data.get("duration"), field="duration", default=DEFAULT_FAULT_DURATION)
    if not 0 < duration <= MAX_FAULT_DURATION:
        raise FaultRequestError(
            f"'duration' must be more than 0 and at most {MAX_FAULT_DURATION / 3600:g}h "
            f"(got {duration:g}s)"
        )
    rule = FaultRule(
        delay=delay,
        delay_percent=percent if delay > 0 else 0.0,
        abort_status=abort_status,
        abort_grpc=abort_grpc,
        abort_percent=percent if abort_status is not None or abort_grpc is not None else 0.0,
        headers=_headers(data.get("headers")),
        path_prefix=path_prefix,
    )
    return FaultRequest(service=service, rule=rule, duration=duration)


class UnknownService(LookupError):
    """A fault or restart for a service the mesh does not run."""

    def __init__(self, service: str, known: list[str]) -> None:
        names = ", ".join(known) if known else "none"
        super().__init__(f"no service called {service!r} in this mesh (its services: {names})")
        self.service = service
        self.known = known


def _abort(value: object) -> tuple[int | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, bool):
        raise FaultRequestError(f"'abort' must be an HTTP status or a gRPC code, not {value!r}")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        if not 200 <= value <= 599:
            raise FaultRequestError(f"'abort' must be an HTTP status from 200 to 599 (got {value})")
        return value, None
    if isinstance(value, str) and value.lower() in GRPC_STATUS_NAMES:
        return None, value.lower()
    names = ", ".join(GRPC_STATUS_NAMES)
    raise FaultRequestError(
        f"'abort' must be an HTTP status (e.g. 503) or a gRPC code name ({names}); got {value!r}"
    )


def _seconds(value: object, *, field: str, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_duration(value)
    except DurationError as error:
        raise FaultRequestError(f"'{field}': {error}") from None


def _percent(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise FaultRequestError(
            f"'percent' must be a number above 0 and at most 100 (got {value!r})"
        )
    return float(value)


def _headers(value: object) -> tuple[HeaderMatch, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str) and name and isinstance(text, str) for name, text in value.items()
    ):
        raise FaultRequestError(
            "'headers' must map header names to the exact values a request must carry"
        )
    return tuple(
        HeaderMatch(name=name.lower(), kind="exact", value=text)
        for name, text in sorted(value.items())
    )
