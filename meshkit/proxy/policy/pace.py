"""How long a sidecar waits for a request body (Apache's ``mod_reqtimeout``, in small).

A client that sends its head and then a body that stalls, or trickles, would
hold a connection and an upstream request for as long as it likes.
``BodyPace`` bounds the time spent *waiting for the client* (time the upstream
makes us wait does not count): no single wait longer than ``timeout``
(a stall), and all waits together no longer than ``timeout`` plus one second
per ``min_rate`` bytes received (a trickle; Apache: ``body=20,MinRate=500``).
The caller measures its waits and reports them; nothing here reads a clock.
"""

from __future__ import annotations

import attrs


@attrs.define(kw_only=True)
class BodyPace:
    """One request body's allowance of waiting (seconds)."""

    timeout: float
    min_rate: float  # bytes per second earning one more second; 0: no rate rule
    waited: float = 0.0

    def next_wait(self, received: int) -> float:
        """How long the next wait for body bytes may last, ``received`` bytes in."""
        allowance = self.timeout
        if self.min_rate > 0:
            allowance = min(allowance, self.timeout + received / self.min_rate - self.waited)
        return max(0.0, allowance)

    def waited_for(self, seconds: float) -> None:
        self.waited += seconds

    def describe(self, received: int, wait: float) -> str:
        """Why the body was given up after a wait of ``wait`` seconds."""
        if wait >= self.timeout:
            return f"request body stalled: nothing received for {self.timeout:g}s"
        return (
            f"request body too slow: {received} bytes in {self.waited:.3g}s "
            f"(at least {self.min_rate:g} bytes/s after the first {self.timeout:g}s)"
        )
