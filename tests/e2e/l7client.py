"""Clients for the routing and resilience tests: one request, and load from threads.

Every request goes on a fresh connection to 127.0.0.1, so each one crosses the
gateway's routing afresh; answers are recorded with the time they arrived.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from tests.meshproc import MeshProcess

APP = Path(__file__).resolve().parent / "apps" / "versioned_echo.py"


@attrs.define
class Answer:
    """One answer: status 0 means no HTTP answer at all (``error`` says why)."""

    status: int
    headers: dict[str, str] = attrs.field(factory=dict)
    raw: bytes = b""
    seconds: float = 0.0
    at: float = 0.0
    error: str = ""

    @property
    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.raw)
        return document

    @property
    def version(self) -> str:
        return str(self.json.get("version", "")) if self.status == 200 else ""

    @property
    def flag(self) -> str:
        return self.headers.get("x-meshkit-flag", "")

    def __repr__(self) -> str:
        return (
            f"Answer({self.status}, {self.seconds:.3f}s, flag={self.flag!r}, "
            f"error={self.error!r}, raw={self.raw[:300]!r})"
        )


def gateway_port(mesh: MeshProcess) -> int:
    return int(mesh.gateway_url().rsplit(":", 1)[1])


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Answer:
    """``method path`` to ``127.0.0.1:port``; never raises for a network failure."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        now = time.monotonic()
        return Answer(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            raw=raw,
            seconds=now - started,
            at=now,
        )
    except (OSError, http.client.HTTPException) as error:
        now = time.monotonic()
        return Answer(status=0, seconds=now - started, at=now, error=repr(error))
    finally:
        connection.close()


@attrs.define
class Load:
    """Requests sent back to back by a few threads until stopped."""

    send: Callable[[], Answer]
    answers: list[Answer] = attrs.field(factory=list)
    stop: threading.Event = attrs.field(factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.answers.append(self.send())

    def failed(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status != 200]


@contextmanager
def load_on(send: Callable[[], Answer], clients: int = 3) -> Iterator[Load]:
    load = Load(send=send)
    threads = [threading.Thread(target=load.run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(30)


def concurrently(count: int, send: Callable[[], Answer]) -> list[Answer]:
    """``count`` calls of ``send`` started at once; their answers."""
    answers: list[Answer] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one() -> None:
        barrier.wait()
        answer = send()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def instances(mesh: MeshProcess, service: str, version: str | None = None) -> list[dict[str, Any]]:
    """The status of every instance of ``service`` (of ``version`` only, when given)."""
    return [
        instance
        for entry in mesh.status()["services"]
        if entry["name"] == service and version in (None, entry["version"])
        for instance in entry["instances"]
    ]
