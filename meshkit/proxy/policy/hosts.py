"""Which Host a request may name (DNS rebinding): loopback, or a name the Meshfile declares.

A web page open in the user's browser can point a name it controls at 127.0.0.1 and then send
requests to meshkit's ports; its requests carry that name as Host. Like a development server's
allowed-hosts list, an endpoint answers only requests whose Host is loopback (`localhost`,
`127.0.0.1`, `[::1]`, any port) or one of the names it is told (service names for mesh-internal
hops, the gateway's declared hosts). Pure: no I/O.
"""

from __future__ import annotations

import attrs

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(host: str) -> str:
    """The name in a Host header value, lower-cased, without its port or IPv6 brackets."""
    value = host.strip().lower()
    if value.startswith("["):
        closing = value.find("]")
        return value[1:closing] if closing > 0 else value
    name, _, port = value.rpartition(":")
    if name and port.isdigit():
        return name.rstrip(".")
    return value.rstrip(".")


@attrs.frozen(kw_only=True)
class HostAllowList:
    """Loopback names, and the declared names (exact, case-insensitive)."""

    declared: frozenset[str] = frozenset()

    @classmethod
    def of(cls, names: tuple[str, ...] | list[str] | frozenset[str] = ()) -> HostAllowList:
        return cls(declared=frozenset(host_name(name) for name in names))

    def allows(self, host: str | None) -> bool:
        """Whether a request naming `host` may be answered; a missing Host is refused."""
        if not host:
            return False
        name = host_name(host)
        if name in LOOPBACK_NAMES or name.endswith(".localhost"):
            return True
        return name in self.declared
