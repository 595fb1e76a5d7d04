"""What a test holds: ``MeshHandle`` (blocking) and ``AsyncMeshHandle`` (awaitable).

A test reaches a service through the mesh, never around it:

* ``url(service)``: the gateway's URL and the service's route prefix when the
  Meshfile routes the service there (``url("b") + "/items"`` asks the gateway
  for ``/b/items`` under ``routes={"/b": "b"}``), otherwise ``ingress_url``;
* ``ingress_url(service)`` / ``addr(service)``: the test ingress's loopback
  port for that service (``meshkit.runtime.ingress``), mTLS across the mesh;
* ``proxy_url(caller)``: ``caller``'s own ``HTTP_PROXY``, to call *as* it.

At runtime a test can also inject faults and rate limits (``fault``, ``limit``:
a context manager, or an object with ``clear()``), read the calls a service
answered (``calls``, ``clear_calls``) and restart a service (``restart``).

Ports are read from the control plane on every call.  ``AsyncMeshHandle`` is
the thin awaitable face of ``MeshHandle``: each of its methods runs the
blocking method of the same name in a worker thread (``anyio.to_thread``), so
it works under pytest-trio and anyio without blocking the event loop; only
``wait_healthy`` sleeps on the event loop between its polls.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread
import attrs

from meshkit.api.control import error_text, request_json_blocking
from meshkit.observe.client import Edge, read_trace, read_traffic
from meshkit.runtime.ingress import INGRESS_SERVICE
from meshkit.testing.calls import (
    AsyncFaultRequest,
    Call,
    InjectedFault,
    clear_calls,
    read_calls,
)
from meshkit.testing.launch import MeshProcess
from meshkit.testing.status import (
    StatusDocument,
    describe_unhealthy,
    fetch_status,
    gateway_url,
    ingress_port,
    instances_of,
    is_healthy,
    log_tail,
    outbound_port,
    pick_instance,
    service_names,
)

T = TypeVar("T")
P = ParamSpec("P")
POLL_INTERVAL = 0.1
KILL_NOTICE_TIMEOUT = 10.0
FAULT_CALL_TIMEOUT = 20.0  # the control plane answers within ~5 s, once sidecars applied it
RESTART_TIMEOUT = 300.0


class MeshNotHealthy(AssertionError):
    """``wait_healthy`` ran out of time; the message names the instances and their logs."""


class MeshRefused(AssertionError):
    """The control plane refused a request of the test (unknown service, bad fault, ...)."""


class MeshNotInSync(MeshRefused):
    """A change the test pushed was not applied by every sidecar in time; names the laggards."""


@attrs.frozen(eq=False)
class MeshHandle:
    """A running mesh, as a test sees it.  Blocking; see ``aio`` for the async twin."""

    process: MeshProcess  # the ``meshkit up`` subprocess behind this handle
    _gateway_routes: dict[str, str] = attrs.field(kw_only=True, alias="gateway_routes")
    aio: AsyncMeshHandle = attrs.field(init=False, repr=False)

    @aio.default
    def _async_face(self) -> AsyncMeshHandle:
        return AsyncMeshHandle(self)

    @property
    def meshfile(self) -> Path:
        return self.process.meshfile

    @property
    def state_dir(self) -> Path:
        """The mesh's ``.meshkit`` directory (its logs are under ``logs/``)."""
        return self.process.state_dir

    @property
    def workdir(self) -> Path:
        """Where ``meshkit up`` runs: ``cd`` here to use ``meshkit status`` or ``meshkit down``."""
        return self.process.workdir

    def status(self) -> StatusDocument:
        """The control plane's ``/v1/status`` document, fresh."""
        return fetch_status(self.process.control_socket)

    def services(self) -> list[str]:
        """The services of the Meshfile (the test ingress left out)."""
        return service_names(self.status())

    def gateway_url(self) -> str:
        url = gateway_url(self.status())
        if url is None:
            raise LookupError(f"{self.meshfile} declares no gateway (or it is not listening)")
        return url

    def ingress_url(self, service: str) -> str:
        """``http://127.0.0.1:<port>``: the test ingress's way into ``service``."""
        return f"http://{self.addr(service)}"

    def addr(self, service: str) -> str:
        """``127.0.0.1:<port>`` leading to ``service`` through the mesh (h2c, gRPC, raw TCP)."""
        return f"127.0.0.1:{ingress_port(self.status(), service)}"

    def url(self, service: str) -> str:
        """A base URL reaching ``service``: the gateway and its prefix if routed there, else the ingress."""
        status = self.status()
        instances_of(status, service)
        url = gateway_url(status)
        if service in self._gateway_routes and url is not None:
            return url + self._gateway_routes[service].rstrip("/")
        return f"http://127.0.0.1:{ingress_port(status, service)}"

    def proxy_url(self, service: str) -> str:
        """``service``'s ``HTTP_PROXY``: a request sent through it is a call *by* ``service``."""
        return f"http://127.0.0.1:{outbound_port(self.status(), service)}"

    def instances(self, service: str) -> list[str]:
        """The ids of ``service``'s instances (every version), in order."""
        return [instance["id"] for instance in instances_of(self.status(), service)]

    def kill(self, service: str, instance: int | str = 0) -> int:
        """SIGKILL one app instance (by position or id); return the pid that was killed.

        Returns once the mesh has noticed (the instance left ``healthy`` or has
        a new pid), so a following ``wait_healthy`` waits for the restart.
        """
        target = pick_instance(self.status(), service, instance)
        pid = target.get("pid")
        if pid is None or target.get("state") in ("stopped", "crashed", "backoff"):
            raise RuntimeError(f"{target['id']} has no running app to kill ({target.get('state')})")
        with contextlib.suppress(ProcessLookupError):
            try:
                os.killpg(pid, signal.SIGKILL)
            except PermissionError:
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_NOTICE_TIMEOUT
        while time.monotonic() < deadline:
            now = pick_instance(self.status(), service, target["id"])
            if now.get("state") != "healthy" or now.get("pid") != pid:
                return int(pid)
            time.sleep(POLL_INTERVAL / 2)
        raise MeshNotHealthy(
            f"killed {target['id']} (pid {pid}) but the mesh did not notice within "
            f"{KILL_NOTICE_TIMEOUT:g}s"
        )

    def _control(self, method: str, path: str, body: object = None, *, timeout: float) -> Any:
        socket_path = self.process.control_socket
        code, answer = request_json_blocking(socket_path, method, path, body, timeout=timeout)
        if code != 200:
            raise MeshRefused(
                f"{method} {path}: {error_text(answer)} (control plane answered {code})"
            )
        return answer

    def fault(
        self,
        service: str,
        abort: int | str | None = None,
        delay: float | str | None = None,
        percent: float = 100,
        path_prefix: str | None = None,
        headers: dict[str, str] | None = None,
        duration: float | str | None = None,
    ) -> InjectedFault:
        """Make requests to ``service`` fail (``abort``: 503 or ``"unavailable"``) and/or wait.

        In force when this returns (every sidecar applied it; ``MeshNotInSync``
        naming the sidecars that did not, otherwise), until ``clear()``
        or the end of a ``with`` block; it expires after ``duration`` (default
        5 minutes) in any case.  ``path_prefix`` and ``headers`` narrow it to the
        requests whose path starts with ``path_prefix`` and that carry those headers.
        """
        body = {
            "service": service,
            "abort": abort,
            "delay": delay,
            "percent": percent,
            "path_prefix": path_prefix,
            "headers": headers,
            "duration": duration,
        }
        return self._runtime_change("faults", "fault", body)

    def limit(
        self,
        service: str,
        rate: str,
        burst: int | None = None,
        route: str | None = None,
        per: str = "service",
        duration: float | str | None = None,
    ) -> InjectedFault:
        """Admit at most ``rate`` (``"10/s"``) requests to each instance of ``service``.

        Like ``meshkit limit``: ``burst`` tokens at once, only on paths under
        ``route`` (a prefix), one bucket per caller with ``per="caller"``; it
        replaces a Meshfile limit on the same requests.  In force when this
        returns, until ``clear()``, the end of a ``with`` block or ``duration``.
        """
        body = {"service": service, "rate": rate, "burst": burst, "route": route, "per": per}
        return self._runtime_change("limits", "limit", {**body, "duration": duration})

    def _runtime_change(self, kind: str, noun: str, body: dict[str, Any]) -> InjectedFault:
        """POST a runtime fault or limit; an ``InjectedFault`` whose ``clear()`` removes it."""
        answer = self._control("POST", f"/v1/{kind}", body, timeout=FAULT_CALL_TIMEOUT)
        _require_synced(answer, f"{noun} {answer.get('id')} on {body['service']}")

        def clear(entry_id: str) -> None:
            cleared = self._control("DELETE", f"/v1/{kind}/{entry_id}", timeout=FAULT_CALL_TIMEOUT)
            _require_synced(cleared, f"clearing {noun} {entry_id}")

        return InjectedFault(
            id=str(answer["id"]),
            service=str(body["service"]),
            expires_at=float(answer["expires_at"]),
            clear=clear,
        )

    def clear_faults(self, service: str) -> list[str]:
        """Remove every fault on ``service``; return their ids."""
        answer = self._control(
            "DELETE", f"/v1/faults?service={quote(service)}", timeout=FAULT_CALL_TIMEOUT
        )
        _require_synced(answer, f"clearing the faults on {service}")
        return [str(fault_id) for fault_id in answer["removed"]]

    def calls(self, service: str, since: float | None = None) -> list[Call]:
        """The requests the current instances of ``service`` answered, oldest first.

        Each ``Call`` says who called (``caller``: ``gateway`` or a service
        name, from the caller's mTLS identity), the method, path, status,
        duration and response flag.  ``since`` (``time.time()`` seconds)
        leaves out the calls that arrived before it; each sidecar keeps its last 1000.
        """
        return read_calls(self.status(), service, run_dir=self.state_dir / "run", since=since)

    def clear_calls(self, service: str) -> None:
        """Forget the calls logged so far by every current instance of ``service``."""
        clear_calls(self.status(), service, run_dir=self.state_dir / "run")

    def traffic(self) -> list[Edge]:
        """The edges of the service graph so far: who called whom, how often, how well.

        ``Edge.requests`` counts since the mesh started; compare two readings
        to count what one test did.
        """
        return read_traffic(self.state_dir / "run")

    def trace(self, request_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The trace of a request (its ``x-request-id`` or trace id) as trees of spans."""
        return read_trace(request_id, run_dir=self.state_dir / "run", timeout=timeout)

    def restart(self, service: str) -> dict[str, Any]:
        """Restart every instance of ``service``, one at a time; return when done.

        Raises ``MeshRefused`` if the restart could not be done or had problems
        (a sidecar that did not acknowledge the new endpoints is named).
        """
        path = f"/v1/services/{quote(service, safe='')}/restart"
        outcome = self._control("POST", path, timeout=RESTART_TIMEOUT)
        if not outcome.get("applied") or outcome.get("error"):
            raise MeshRefused(f"restarting {service}: {outcome.get('error')}")
        assert isinstance(outcome, dict)
        return outcome

    def wait_healthy(self, service: str | None = None, timeout: float = 30.0) -> StatusDocument:
        """Block until ``service`` (or the whole mesh) is healthy; return the status.

        Raises ``MeshNotHealthy`` naming each instance that is not healthy,
        with the last lines of its log.
        """
        wait = _HealthWait(self.process, service, timeout)
        while True:
            status = self.status()
            if wait.reached(status):
                return status
            time.sleep(POLL_INTERVAL)

    def instance_logs(self, service: str, *, sidecar: bool = False) -> dict[str, str]:
        """Each instance's log text by instance id (its sidecar's log with ``sidecar=True``).

        Every generation of an instance writes on in the file of its stable
        name, so a replacement's log holds its predecessors' too.
        """
        suffix = ".proxy.log" if sidecar else ".log"
        logs = {}
        for instance_id in self.instances(service):
            name = instance_id.partition("~")[0]
            path = self.process.logs_dir / f"{name}{suffix}"
            try:
                logs[instance_id] = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                logs[instance_id] = ""
        return logs

    def logs(self, service: str, *, sidecar: bool = False) -> str:
        """The log text of every instance of ``service``, one after the other."""
        return "".join(self.instance_logs(service, sidecar=sidecar).values())

    def log_tails(self, lines: int) -> dict[str, str]:
        """The last lines of every app instance's log (test ingress left out), by instance id."""
        try:
            status = self.status()
        except Exception:
            names = sorted(path.stem for path in self.process.logs_dir.glob("*.log"))
            ids = [name for name in names if not name.endswith(".proxy")]
        else:
            ids = [
                instance["id"]
                for entry in status.get("services", [])
                if entry["name"] != INGRESS_SERVICE
                for instance in entry["instances"]
            ]
        return {
            instance_id: log_tail(
                self.process.logs_dir / f"{instance_id.partition('~')[0]}.log", lines
            )
            for instance_id in ids
        }


def _require_synced(answer: dict[str, Any], change: str) -> None:
    """``MeshNotInSync`` naming the sidecars that did not apply ``change`` in time."""
    if answer.get("synced"):
        return
    lagging = ", ".join(answer.get("lagging") or []) or "some sidecars"
    raise MeshNotInSync(
        f"{change}: {lagging} did not apply it within the control plane's wait; "
        "the mesh may be overloaded or a sidecar stuck"
    )


class _HealthWait:
    """The deadline of one ``wait_healthy``, shared by the blocking and the async loop."""

    def __init__(self, process: MeshProcess, service: str | None, timeout: float) -> None:
        self.process = process
        self._service = service
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout

    def reached(self, status: StatusDocument) -> bool:
        """True once healthy; ``MeshNotHealthy`` (naming who and why) once out of time."""
        if is_healthy(status, self._service):
            return True
        if time.monotonic() < self._deadline:
            return False
        what = "the mesh" if self._service is None else f"service {self._service!r}"
        report = describe_unhealthy(
            status,
            self._service,
            logs_dir=self.process.logs_dir,
            lines=self.process.options.log_lines,
        )
        raise MeshNotHealthy(f"{what} was not healthy after {self._timeout:g}s:\n{report}")


def _in_worker_thread(
    method: Callable[Concatenate[MeshHandle, P], T],
) -> Callable[Concatenate[AsyncMeshHandle, P], Awaitable[T]]:
    """``MeshHandle.method``, awaitable: it runs in a worker thread; same docstring."""

    @functools.wraps(method)
    async def awaitable(self: AsyncMeshHandle, /, *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(method, self._handle, *args, **kwargs)
        return await anyio.to_thread.run_sync(call)

    return awaitable


def _injected_when_awaited(
    method: Callable[Concatenate[MeshHandle, P], InjectedFault],
) -> Callable[Concatenate[AsyncMeshHandle, P], AsyncFaultRequest]:
    """``MeshHandle.fault`` or ``limit`` for async tests: awaited, or used with ``async with``."""

    @functools.wraps(method)
    def request(self: AsyncMeshHandle, /, *args: P.args, **kwargs: P.kwargs) -> AsyncFaultRequest:
        return AsyncFaultRequest(functools.partial(method, self._handle, *args, **kwargs))

    name = method.__name__
    usage = f"``{name} = await mesh.aio.{name}(...)`` or ``async with mesh.aio.{name}(...):``."
    request.__doc__ = f"{usage}\n\n{method.__doc__}"
    return request


class AsyncMeshHandle:
    """The operations of ``MeshHandle``, awaitable (trio, or anyio on any backend)."""

    def __init__(self, handle: MeshHandle) -> None:
        self._handle = handle

    status = _in_worker_thread(MeshHandle.status)
    services = _in_worker_thread(MeshHandle.services)
    url = _in_worker_thread(MeshHandle.url)
    ingress_url = _in_worker_thread(MeshHandle.ingress_url)
    proxy_url = _in_worker_thread(MeshHandle.proxy_url)
    addr = _in_worker_thread(MeshHandle.addr)
    gateway_url = _in_worker_thread(MeshHandle.gateway_url)
    instances = _in_worker_thread(MeshHandle.instances)
    kill = _in_worker_thread(MeshHandle.kill)
    fault = _injected_when_awaited(MeshHandle.fault)
    limit = _injected_when_awaited(MeshHandle.limit)
    clear_faults = _in_worker_thread(MeshHandle.clear_faults)
    calls = _in_worker_thread(MeshHandle.calls)
    clear_calls = _in_worker_thread(MeshHandle.clear_calls)
    restart = _in_worker_thread(MeshHandle.restart)
    traffic = _in_worker_thread(MeshHandle.traffic)
    trace = _in_worker_thread(MeshHandle.trace)
    logs = _in_worker_thread(MeshHandle.logs)

    async def wait_healthy(
        self, service: str | None = None, timeout: float = 30.0
    ) -> StatusDocument:
        """Like ``MeshHandle.wait_healthy``; sleeps on the event loop between polls."""
        wait = _HealthWait(self._handle.process, service, timeout)
        while True:
            status = await self.status()
            if wait.reached(status):
                return status
            await anyio.sleep(POLL_INTERVAL)
