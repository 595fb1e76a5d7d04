"""Steady HTTP/1.1 load for end-to-end tests: a few keep-alive clients at a total rate.

``Load(url, rate=200)`` runs in threads until ``stop()``; every request is
recorded with its status (0: a transport error or timeout) and its latency.
"""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlsplit

import attrs


@attrs.frozen(kw_only=True)
class Outcome:
    at: float
    status: int
    latency: float
    error: str = ""


class Load:
    def __init__(self, url: str, *, rate: float = 200.0, clients: int = 4, timeout: float = 5.0):
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.interval = clients / rate
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.outcomes

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status != 200]

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            began = time.monotonic()
            status, error = 0, ""
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = None
            outcome = Outcome(at=began, status=status, latency=time.monotonic() - began, error=error)
            with self._lock:
                self.outcomes.append(outcome)
            next_at = max(next_at + self.interval, time.monotonic() - 1)
            self._stop.wait(max(next_at - time.monotonic(), 0))
        if conn is not None:
            conn.close()
