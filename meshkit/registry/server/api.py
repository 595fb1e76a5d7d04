"""The control API: HTTP/1.1 (h11) over the Unix socket ``.meshkit/run/control.sock``.

Endpoints (JSON bodies, one request per connection):

* ``GET /v1/status`` -> the status document (``meshkit.registry.status``);
  ``?wait=ready`` answers it once the mesh is ready, or after ``READY_WAIT`` s
  (whoever waits for a starting mesh need not poll).
* ``POST /v1/down`` -> 202 ``{"stopping": true}``; asks the control plane to stop.
* ``GET /v1/config/<instance>?after=N`` -> long-poll: 200 ``{"version", "config"}``
  once the instance's config version is above N, 204 after ``poll_timeout``.
* ``POST /v1/instances/<instance>/ready`` ``{"pid", "ports"}`` -> 200 ``{}``.
* ``POST /v1/instances/<instance>/ack`` ``{"version", "error"}`` -> 200 ``{}``.
* ``POST /v1/instances/<instance>/spans`` ``{"spans": [...]}`` -> 200 ``{"kept": N}``:
  a sidecar's finished spans (``meshkit.proxy.telemetry.tracing.Span``), kept by
  ``on_spans`` (the observe room's span store).
* ``POST /v1/reload`` -> 200 with the outcome of re-reading the Meshfile
  (``{"applied", "summary", "error", "duration_ms"}``), once it is applied or refused.
* ``GET /v1/instances/<instance>/config`` -> 200 ``{"instance", "version",
  "published_version", "sync", "bound_ports", "config"}``: the config that sidecar last
  acknowledged as applied (``config`` null before its first); ``<instance>``
  may be the stable name of a replaced instance (``catalog-v1-0`` for
  ``catalog-v1-0~2``).
* ``POST /v1/instances/<instance>/certificate`` (``meshkit.ca.exchange`` bodies)
  -> 200 ``{"certificate", "root"}``; 403 with the reason when refused: a CSR
  for another identity than the instance's service, a used or unknown token,
  a renewal without a current certificate and proof.  Issued certificates
  (their expiry) and refusals are recorded on the instance for the status.
* ``POST /v1/faults``, ``GET /v1/faults``, ``DELETE /v1/faults?service=X``,
  ``DELETE /v1/faults/<id>``, and the same under ``/v1/limits``: runtime faults
  and rate limits (``meshkit.registry.server.faults``, ``...limits``;
  the control server also runs the task that expires them).
* ``POST /v1/services/<service>/restart`` -> 200 with the outcome of a rolling
  restart of every instance of the service (``{"applied", "summary", "error",
  "duration_ms"}``), once it is done; 404 naming the services for an unknown one.

Errors answer 4xx/5xx with ``{"error": "<reason>"}``.  The socket file is made
0600 and its directory 0700: only the owner may drive the mesh.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import h11
import trio
from cryptography import x509

from meshkit.ca.errors import CaError, CertificateRefused
from meshkit.ca.exchange import MalformedCertificateRequest, answer_certificate_request
from meshkit.ca.issuer import DEFAULT_LEAF_LIFETIME, Issuer
from meshkit.ca.spiffe import identity_of_csr, spiffe_id
from meshkit.proxy.wire import config_to_dict
from meshkit.registry.faults import UnknownService
from meshkit.registry.server.changes import RegistryChanges
from meshkit.registry.server.faults import FaultControl
from meshkit.registry.server.limits import LimitControl
from meshkit.registry.state import GATEWAY_INSTANCE, Registry, RegistryError
from meshkit.registry.status import mesh_ready, status_document, sync_state

MAX_REQUEST_BYTES = 1024 * 1024
REQUEST_READ_TIMEOUT = 10.0
READY_WAIT = 2.0


@attrs.frozen(kw_only=True)
class Reply:
    status: int
    body: Any = None


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@attrs.define(eq=False)
class ControlServer:
    """Serves the control API for one ``Registry``.

    ``on_down`` is called (once per request) when someone asks the mesh to stop;
    ``on_ready`` after a sidecar reported its ports.  ``issuer`` signs the
    sidecars' certificates (none: the certificate endpoint answers 503);
    ``announce`` tells the person running the mesh about refused requests;
    ``on_reload`` re-reads the Meshfile and returns the outcome (none: 503);
    ``on_restart`` restarts every instance of a service, one by one, and
    returns the outcome (none: 503).  ``faults`` serves the runtime faults
    (default: a ``FaultControl`` on the wall clock).
    """

    registry: Registry
    meshfile: str = attrs.field(kw_only=True)
    on_down: Callable[[], None] = attrs.field(kw_only=True)
    on_ready: Callable[[str], None] | None = attrs.field(kw_only=True, default=None)
    poll_timeout: float = attrs.field(kw_only=True, default=20.0)
    changes: RegistryChanges = attrs.field(
        kw_only=True,
        default=attrs.Factory(lambda self: RegistryChanges(self.registry), takes_self=True),
    )
    issuer: Issuer | None = attrs.field(kw_only=True, default=None)
    cert_lifetime: float = attrs.field(kw_only=True, default=DEFAULT_LEAF_LIFETIME)
    announce: Callable[[str], None] | None = attrs.field(kw_only=True, default=None)
    on_reload: Callable[[], Awaitable[dict[str, Any]]] | None = attrs.field(
        kw_only=True, default=None
    )
    on_restart: Callable[[str], Awaitable[dict[str, Any]]] | None = attrs.field(
        kw_only=True, default=None
    )
    faults: FaultControl = attrs.field(
        kw_only=True,
        default=attrs.Factory(
            lambda self: FaultControl(self.registry, self.changes), takes_self=True
        ),
    )
    on_spans: Callable[[str, list[Any]], int] | None = attrs.field(kw_only=True, default=None)
    limits: LimitControl = attrs.field(init=False)

    @limits.default
    def _limits(self) -> LimitControl:
        return LimitControl(
            self.registry,
            self.changes,
            wall_clock=self.faults.wall_clock,
            sync_timeout=self.faults.sync_timeout,
        )

    async def serve(
        self,
        socket_path: Path,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``socket_path`` until cancelled; remove the socket file after."""
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(socket_path.parent, 0o700)
        if socket_path.exists() or socket_path.is_symlink():
            socket_path.unlink()
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        # Bound and listening under a private name first, then renamed into
        # place: a client that finds the socket file can always connect.
        binding = socket_path.with_name(f".{os.getpid()}.s")  # never longer: sun_path
        binding.unlink(missing_ok=True)
        try:
            old_umask = os.umask(0o177)
            try:
                await sock.bind(os.fspath(binding))
            finally:
                os.umask(old_umask)
            os.chmod(binding, 0o600)
            sock.listen(64)
            os.replace(binding, socket_path)
            listener = trio.SocketListener(sock)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.faults.expire_forever)
                nursery.start_soon(self.limits.expire_forever)
                task_status.started()
                await trio.serve_listeners(
                    self._handle_connection, [listener], handler_nursery=nursery
                )
        finally:
            sock.close()
            binding.unlink(missing_ok=True)
            socket_path.unlink(missing_ok=True)

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
            try:
                with trio.fail_after(REQUEST_READ_TIMEOUT):
                    request, body = await _read_request(stream, conn)
            except (trio.TooSlowError, h11.RemoteProtocolError, BadRequest) as exc:
                reason = exc.reason if isinstance(exc, BadRequest) else "bad or slow request"
                status = exc.status if isinstance(exc, BadRequest) else 400
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send_reply(stream, conn, Reply(status=status, body={"error": reason}))
                return
            except trio.BrokenResourceError:
                return
            try:
                reply = await self.dispatch(request.method.decode(), request.target.decode(), body)
            except BadRequest as exc:
                reply = Reply(status=exc.status, body={"error": exc.reason})
            except RegistryError as exc:
                reply = Reply(status=404, body={"error": str(exc)})
            try:
                await _send_reply(stream, conn, reply)
            except trio.BrokenResourceError:
                return

    async def dispatch(self, method: str, target: str, body: bytes) -> Reply:
        """Answer one request; exposed for in-process tests."""
        url = urlsplit(target)
        parts = [p for p in url.path.split("/") if p]
        if parts[:1] != ["v1"]:
            raise BadRequest(404, f"no such endpoint: {url.path}")
        route = parts[1:]
        if route == ["status"]:
            _expect(method, "GET")
            if parse_qs(url.query).get("wait") == ["ready"]:
                await self.changes.wait_until(mesh_ready, timeout=READY_WAIT)
            return Reply(status=200, body=status_document(self.registry, file=self.meshfile))
        if route == ["down"]:
            _expect(method, "POST")
            self.on_down()
            return Reply(status=202, body={"stopping": True})
        if route == ["reload"]:
            _expect(method, "POST")
            if self.on_reload is None:
                raise BadRequest(503, "this control plane cannot reload its Meshfile")
            return Reply(status=200, body=await self.on_reload())
        if len(route) == 3 and route[0] == "instances":
            return self._instance(method, route[1], route[2], body)
        if len(route) == 2 and route[0] == "config":
            _expect(method, "GET")
            return await self._long_poll(route[1], parse_qs(url.query))
        if route[:1] in (["faults"], ["limits"]) and len(route) <= 2:
            control = self.faults if route[0] == "faults" else self.limits
            return await self._runtime(control, method, route[1:], parse_qs(url.query), body)
        if len(route) == 3 and route[0] == "services" and route[2] == "restart":
            _expect(method, "POST")
            return await self._restart(route[1])
        raise BadRequest(404, f"no such endpoint: {url.path}")

    def _instance(self, method: str, instance_id: str, action: str, body: bytes) -> Reply:
        """``/v1/instances/<instance>/<action>``: config (GET), ready, ack, certificate (POST)."""
        if action == "config":
            _expect(method, "GET")
            return self._applied_config(instance_id)
        answers = {
            "ready": self._ready,
            "ack": self._ack,
            "spans": self._spans,
            "certificate": self._certificate,
        }
        if action not in answers:
            raise BadRequest(404, f"no such endpoint: /v1/instances/{instance_id}/{action}")
        _expect(method, "POST")
        return answers[action](instance_id, _json_object(body))

    async def _runtime(
        self,
        control: FaultControl | LimitControl,
        method: str,
        rest: list[str],
        query: dict[str, list[str]],
        body: bytes,
    ) -> Reply:
        """``/v1/faults`` and ``/v1/limits``: list, add, clear by service or by id."""
        if rest:
            _expect(method, "DELETE")
            status, answer = await control.clear_one(rest[0])
        elif method == "GET":
            status, answer = control.listing()
        elif method == "POST":
            status, answer = await control.inject(_json_object(body))
        elif method == "DELETE":
            services = query.get("service")
            if not services:
                raise BadRequest(
                    400, f"say which {control.noun}s to clear: ?service=<name> or /<id>"
                )
            status, answer = await control.clear_service(services[0])
        else:
            raise BadRequest(405, f"method {method} not allowed here; use GET, POST or DELETE")
        return Reply(status=status, body=answer)

    async def _restart(self, service: str) -> Reply:
        known = self.faults.known_services()
        if service not in known:
            raise BadRequest(404, str(UnknownService(service, known)))
        if self.on_restart is None:
            raise BadRequest(503, "this control plane cannot restart services")
        return Reply(status=200, body=await self.on_restart(service))

    async def _long_poll(self, instance_id: str, query: dict[str, list[str]]) -> Reply:
        self.registry.get(instance_id)
        try:
            after = int(query.get("after", ["0"])[0])
        except ValueError:
            raise BadRequest(400, "'after' must be an integer config version") from None

        def newer(registry: Registry) -> bool:
            return registry.config_version(instance_id) > after

        if not await self.changes.wait_until(newer, timeout=self.poll_timeout):
            return Reply(status=204)
        config = self.registry.config_of(instance_id)
        assert config is not None
        return Reply(status=200, body={"version": config.version, "config": config_to_dict(config)})

    def _ready(self, instance_id: str, data: dict[str, Any]) -> Reply:
        self.registry.get(instance_id)
        pid = data.get("pid")
        ports = data.get("ports")
        if not isinstance(pid, int) or not isinstance(ports, dict):
            raise BadRequest(400, "ready needs {'pid': int, 'ports': {listener name: int}}")
        if not all(isinstance(k, str) and isinstance(v, int) for k, v in ports.items()):
            raise BadRequest(400, "every port in 'ports' must be an integer")
        self.registry.mark_sidecar_ready(instance_id, pid=pid, ports=ports)
        if self.on_ready is not None:
            self.on_ready(instance_id)
        return Reply(status=200, body={})

    def _spans(self, instance_id: str, data: dict[str, Any]) -> Reply:
        self.registry.get(instance_id)
        spans = data.get("spans")
        if not isinstance(spans, list):
            raise BadRequest(400, "spans needs {'spans': [span, ...]}")
        if self.on_spans is None:
            raise BadRequest(503, "this control plane keeps no spans")
        try:
            kept = self.on_spans(instance_id, spans)
        except ValueError as error:
            raise BadRequest(400, str(error)) from None
        return Reply(status=200, body={"kept": kept})

    def _ack(self, instance_id: str, data: dict[str, Any]) -> Reply:
        self.registry.get(instance_id)
        version = data.get("version")
        error = data.get("error")
        if not isinstance(version, int) or not (error is None or isinstance(error, str)):
            raise BadRequest(400, "ack needs {'version': int, 'error': null or string}")
        self.registry.record_ack(instance_id, version=version, error=error)
        return Reply(status=200, body={})

    def _applied_config(self, name: str) -> Reply:
        record = self.registry.newest_named(name)
        if record is None:
            self.registry.get(name)  # raises the usual "no instance called ..." error
            raise AssertionError("unreachable")
        applied = self.registry.applied_config_of(record.id)
        return Reply(
            status=200,
            body={
                "instance": record.id,
                "version": None if applied is None else applied.version,
                "published_version": self.registry.config_version(record.id),
                "sync": sync_state(self.registry, record),
                "bound_ports": dict(record.sidecar_ports),
                "config": None if applied is None else config_to_dict(applied),
            },
        )

    def _certificate(self, instance_id: str, data: dict[str, Any]) -> Reply:
        record = self.registry.get(instance_id)
        if self.issuer is None:
            raise BadRequest(503, "this control plane has no certificate authority")
        expected = spiffe_id(self.registry.mesh, record.service)
        gateway = spiffe_id(self.registry.mesh, GATEWAY_INSTANCE)
        try:
            if data.get("purpose") is None:
                _check_requested_identity(data, expected, instance_id)
            answer = answer_certificate_request(
                self.issuer,
                data,
                lifetime=self.cert_lifetime,
                gateway_identity=gateway if record.kind == "gateway" else None,
            )
        except MalformedCertificateRequest as error:
            raise BadRequest(400, str(error)) from None
        except CertificateRefused as error:
            self.registry.record_certificate(instance_id, error=str(error))
            if self.announce is not None:
                self.announce(f"meshkit: refused a certificate for {instance_id}: {error}")
            return Reply(status=403, body={"error": str(error)})
        if data.get("purpose") is None:
            issued = x509.load_pem_x509_certificate(answer["certificate"].encode("ascii"))
            self.registry.record_certificate(
                instance_id, not_after=issued.not_valid_after_utc.timestamp()
            )
        return Reply(status=200, body=answer)


def _check_requested_identity(data: dict[str, Any], expected: str, instance_id: str) -> None:
    """Refuse, before any token is spent, a CSR for another identity than the instance's."""
    csr_text = data.get("csr")
    if not isinstance(csr_text, str):
        raise MalformedCertificateRequest("the field 'csr' must be a non-empty string")
    try:
        requested = identity_of_csr(x509.load_pem_x509_csr(csr_text.encode("ascii", "replace")))
    except (CaError, ValueError) as error:
        raise CertificateRefused(f"unusable CSR: {error}") from None
    if requested != expected:
        raise CertificateRefused(
            f"instance {instance_id} may only have a certificate for {expected}, not {requested}"
        )


def _expect(method: str, allowed: str) -> None:
    if method != allowed:
        raise BadRequest(405, f"method {method} not allowed here; use {allowed}")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise BadRequest(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "body must be a JSON object")
    return data


async def _read_request(stream: trio.abc.Stream, conn: h11.Connection) -> tuple[h11.Request, bytes]:
    request: h11.Request | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = bytes(await stream.receive_some(65536))
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_REQUEST_BYTES:
                raise BadRequest(413, "request body too large")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise BadRequest(400, "connection closed mid-request")


async def _send_reply(stream: trio.abc.Stream, conn: h11.Connection, reply: Reply) -> None:
    payload = b"" if reply.body is None else json.dumps(reply.body).encode()
    headers = [("Connection", "close")]
    if reply.status != 204:
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    out = conn.send(h11.Response(status_code=reply.status, headers=headers))
    if reply.status != 204 and payload:
        out += conn.send(h11.Data(data=payload))
    out += conn.send(h11.EndOfMessage())
    await stream.send_all(out)
