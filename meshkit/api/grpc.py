"""The gRPC status names a Meshfile, the CLI and the control API use, and their numbers."""

from __future__ import annotations

from types import MappingProxyType

GRPC_STATUS_CODES = MappingProxyType(
    {
        "ok": 0,
        "cancelled": 1,
        "unknown": 2,
        "invalid-argument": 3,
        "deadline-exceeded": 4,
        "not-found": 5,
        "already-exists": 6,
        "permission-denied": 7,
        "resource-exhausted": 8,
        "failed-precondition": 9,
        "aborted": 10,
        "out-of-range": 11,
        "unimplemented": 12,
        "internal": 13,
        "unavailable": 14,
        "data-loss": 15,
        "unauthenticated": 16,
    }
)
"""Every gRPC status by its lower-case, hyphenated name."""

GRPC_STATUS_NAMES = tuple(name for name in GRPC_STATUS_CODES if name != "ok")
"""The statuses a fault may answer with or a retry may react to: every one but ``ok``."""

_GRPC_STATUS_OF_HTTP = MappingProxyType(
    {
        400: "internal",
        401: "unauthenticated",
        403: "permission-denied",
        404: "unimplemented",
        429: "unavailable",
        502: "unavailable",
        503: "unavailable",
        504: "unavailable",
    }
)


def grpc_status_of_http(status: int) -> int:
    """The gRPC status a gRPC client gets for an HTTP status (Envoy's mapping; else UNKNOWN)."""
    return GRPC_STATUS_CODES[_GRPC_STATUS_OF_HTTP.get(status, "unknown")]
