"""Free TCP ports on 127.0.0.1 for apps, never the same one twice in a run.

The operating system picks an ephemeral port (bind to port 0); the allocator
remembers every port it handed out so two instances of one run never share
one, even if the first has not bound it yet.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def ephemeral_port(host: str = LOOPBACK) -> int:
    """A port the OS considers free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class PortAllocator:
    """Hands out distinct free ports; ``probe`` is injectable for tests."""

    def __init__(self, *, probe: Callable[[], int] = ephemeral_port, attempts: int = 100) -> None:
        self._probe = probe
        self._attempts = attempts
        self._given: set[int] = set()

    def allocate(self) -> int:
        for _ in range(self._attempts):
            port = self._probe()
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError(f"could not find a free port on {LOOPBACK} in {self._attempts} attempts")

    def release(self, port: int) -> None:
        """Let ``port`` be handed out again (its instance is gone for good)."""
        self._given.discard(port)

    @property
    def allocated(self) -> frozenset[int]:
        return frozenset(self._given)
