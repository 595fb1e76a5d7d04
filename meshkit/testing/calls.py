"""What a test asks the mesh at runtime: the calls a service received, and faults.

``Call`` is one request an instance of a service answered, as its inbound
sidecar logged it (admin ``/calls``, ``meshkit.proxy.telemetry.calls``); ``read_calls``
gathers them from every instance's admin port, oldest first.

``InjectedFault`` is a fault ``mesh.fault(...)`` injected: a context manager
that clears it on exit, or an object whose ``clear()`` does.  The async twin,
``AsyncFaultRequest``, is awaited (``fault = await mesh.aio.fault(...)``) or
used with ``async with``.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio.to_thread
import attrs

from meshkit.api.access import TOKEN_FILE, bearer_header, read_token
from meshkit.testing.status import StatusDocument, instances_of

SPIFFE_SERVICE_MARK = "/sa/"
ADMIN_TIMEOUT = 5.0


class CallsUnavailable(AssertionError):
    """An instance's sidecar did not answer ``/calls``."""


@attrs.frozen(kw_only=True)
class Call:
    """One request a service answered.

    ``caller`` is the calling service's name (``gateway`` for the gateway,
    None for a plaintext caller without identity), ``caller_identity`` the
    SPIFFE ID its sidecar proved with mTLS; ``time`` is when the request
    arrived, in epoch seconds.
    """

    method: str
    path: str
    status: int
    caller: str | None
    caller_identity: str | None
    duration_ms: float
    flag: str
    request_id: str | None
    instance: str
    time: float
    seq: int


def service_of_identity(identity: str | None) -> str | None:
    """``catalog`` for ``spiffe://meshkit.local/ns/shop/sa/catalog``; None for None."""
    if identity is None:
        return None
    _, mark, service = identity.rpartition(SPIFFE_SERVICE_MARK)
    return service if mark else identity


def call_from_record(record: dict[str, Any], *, instance: str) -> Call:
    identity = record.get("caller")
    return Call(
        method=str(record["method"]),
        path=str(record["path"]),
        status=int(record["status"]),
        caller=service_of_identity(identity),
        caller_identity=identity,
        duration_ms=float(record["duration_ms"]),
        flag=str(record["flag"]),
        request_id=record.get("request_id"),
        instance=instance,
        time=float(record["time"]),
        seq=int(record["seq"]),
    )


def admin_request(port: int, method: str, path: str, *, token: str) -> dict[str, Any]:
    """One call to a sidecar's admin listener on 127.0.0.1 with the mesh's token; its JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=ADMIN_TIMEOUT)
    try:
        connection.request(method, path, headers=dict([bearer_header(token)]))
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise CallsUnavailable(f"the sidecar admin port {port} does not answer ({exc})") from None
    finally:
        connection.close()
    if response.status != 200:
        raise CallsUnavailable(
            f"the sidecar admin port {port} answered {response.status} to {method} {path}: "
            f"{data[:200]!r}"
        )
    answer = json.loads(data)
    assert isinstance(answer, dict)
    return answer


def admin_token(run_dir: Path) -> str:
    """The mesh's token, which the sidecars' admin listeners ask for (``CallsUnavailable``)."""
    token = read_token(run_dir)
    if token is None:
        raise CallsUnavailable(f"no {TOKEN_FILE} in {run_dir}: the sidecars' admin pages need it")
    return token


def _admin_ports(status: StatusDocument, service: str) -> Iterable[tuple[str, int]]:
    for instance in instances_of(status, service):
        port = instance.get("admin_port")
        if port is not None and instance.get("state") not in ("stopped", "crashed", "backoff"):
            yield str(instance["id"]), int(port)


def read_calls(
    status: StatusDocument, service: str, *, run_dir: Path, since: float | None = None
) -> list[Call]:
    """Every call the current instances of ``service`` logged, oldest first.

    ``run_dir`` is the mesh's ``.meshkit/run`` (its token opens the admin
    listeners); ``since`` (epoch seconds) leaves out the calls that arrived before it.
    """
    token = admin_token(run_dir)
    calls: list[Call] = []
    for instance_id, port in _admin_ports(status, service):
        answer = admin_request(port, "GET", "/calls", token=token)
        calls.extend(call_from_record(record, instance=instance_id) for record in answer["calls"])
    if since is not None:
        calls = [call for call in calls if call.time >= since]
    return sorted(calls, key=lambda call: (call.time, call.instance, call.seq))


def clear_calls(status: StatusDocument, service: str, *, run_dir: Path) -> None:
    """Forget the calls every current instance of ``service`` logged."""
    token = admin_token(run_dir)
    for _, port in _admin_ports(status, service):
        admin_request(port, "DELETE", "/calls", token=token)


@attrs.define(kw_only=True, eq=False)
class InjectedFault:
    """A fault in force on ``service`` until ``clear()`` or the end of the ``with`` block."""

    id: str
    service: str
    expires_at: float
    _clear: Callable[[str], None] = attrs.field(alias="clear")
    cleared: bool = attrs.field(default=False, init=False)

    def clear(self) -> None:
        """Remove this fault (every sidecar has stopped applying it when this returns)."""
        if not self.cleared:
            self._clear(self.id)
            self.cleared = True

    def __enter__(self) -> InjectedFault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"<InjectedFault {self.id} on {self.service}{' (cleared)' if self.cleared else ''}>"


class AsyncInjectedFault:
    """``InjectedFault`` for async tests: ``await fault.clear()``."""

    def __init__(self, fault: InjectedFault) -> None:
        self.fault = fault

    @property
    def id(self) -> str:
        return self.fault.id

    @property
    def service(self) -> str:
        return self.fault.service

    async def clear(self) -> None:
        await anyio.to_thread.run_sync(self.fault.clear)


class AsyncFaultRequest:
    """What ``mesh.aio.fault(...)`` returns: await it, or use it with ``async with``."""

    def __init__(self, inject: Callable[[], InjectedFault]) -> None:
        self._inject = inject
        self._injected: AsyncInjectedFault | None = None

    async def _start(self) -> AsyncInjectedFault:
        return AsyncInjectedFault(await anyio.to_thread.run_sync(self._inject))

    def __await__(self) -> Generator[Any, None, AsyncInjectedFault]:
        return self._start().__await__()

    async def __aenter__(self) -> AsyncInjectedFault:
        self._injected = await self._start()
        return self._injected

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._injected is not None:
            await self._injected.clear()
