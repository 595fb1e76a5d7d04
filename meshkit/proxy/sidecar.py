"""The sidecar: subscribes to its config, applies it atomically, serves its listeners.

* A config that fails to structure or validate is rejected (NACK with the
  reason) and the previous one keeps serving.
* Listeners are rebound only when their kind, host or port change; a route or
  cluster change is a snapshot swap, invisible to open connections except
  that their next request sees it.
* Ready is reported once, after the first config is applied and every
  listener is bound; every version received is acknowledged.
* If the control plane goes away the sidecar keeps serving its last good
  config and re-subscribes with backoff (``after=0``, to resync).
* ``shutdown()`` stops accepting, closes idle keep-alive connections, lets
  in-flight requests finish for up to ``grace_period`` seconds, then returns.
* With an identity (``meshkit.proxy.identity``), the certificate obtained
  before ``run`` is installed in the data plane, a renewal task swaps in new
  TLS contexts as certificates are renewed, and a config naming another
  identity is rejected.  A config with an HTTPS gateway listener is applied
  only once the gateway's serving certificate is in hand.  A certificate that
  cannot be renewed (the control plane stopped) keeps serving past its expiry
  while renewal is retried; only when the control plane refuses to renew an
  expired one does the sidecar stop with ``exit_status`` 1, so that its
  supervisor restarts it with a fresh bootstrap token.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import attrs
import cattrs
import trio

from meshkit.api.backoff import CONTROL_PLANE_BACKOFF, BackoffCounter
from meshkit.api.control import ControlClient, ControlPlaneError
from meshkit.ca.tls import MeshTlsContexts
from meshkit.proxy.config import Listener, ProxyConfig
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.identity import IdentityError, SidecarIdentity
from meshkit.proxy.memory import trim_when_idle
from meshkit.proxy.net.server import serve_listener
from meshkit.proxy.policy.matching import compile_tables
from meshkit.proxy.policy.ratelimit import validate_limits
from meshkit.proxy.telemetry.spans import ship_spans
from meshkit.proxy.wire import config_from_dict

log = logging.getLogger("meshkit.proxy")

GRACE_PERIOD = 10.0


class ConfigRejected(Exception):
    """A config the sidecar will not apply; the message is the NACK reason."""


def parse_config(raw: Any, *, instance: str) -> ProxyConfig:
    """Structure and validate a config received over the wire, or raise ``ConfigRejected``."""
    try:
        config = config_from_dict(raw)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as error:
        details = (
            "; ".join(cattrs.transform_error(error))
            if isinstance(error, cattrs.BaseValidationError)
            else str(error)
        )
        raise ConfigRejected(f"config does not match the ProxyConfig shape: {details}") from None
    validate_config(config, instance=instance)
    return config


def validate_config(config: ProxyConfig, *, instance: str) -> None:
    """Refuse a config this sidecar cannot apply meaningfully (``ConfigRejected``)."""
    if config.instance != instance:
        raise ConfigRejected(
            f"config is for instance '{config.instance}', this sidecar is '{instance}'"
        )
    _refuse_twice([listener.name for listener in config.listeners], "two listeners named '{}'")
    for listener in config.listeners:
        if not 0 <= listener.port <= 65535:
            raise ConfigRejected(
                f"listener '{listener.name}' has port {listener.port}, outside 0-65535"
            )
        if listener.kind == "upstream" and not listener.cluster:
            raise ConfigRejected(f"upstream listener '{listener.name}' names no cluster")
        if listener.kind == "inbound" and config.app is None:
            raise ConfigRejected(f"inbound listener '{listener.name}' but the config has no app")
        if listener.tls and listener.kind != "gateway":
            raise ConfigRejected(
                f"listener '{listener.name}' asks for TLS, which only gateway listeners serve"
            )
    _refuse_twice([cluster.name for cluster in config.clusters], "two clusters named '{}'")
    _validate_rules(config)
    limits = config.limits
    if limits.max_header_bytes <= 0 or limits.max_header_count <= 0:
        raise ConfigRejected("header limits must be positive")
    if min(limits.header_timeout, limits.idle_timeout, limits.connect_timeout) <= 0:
        raise ConfigRejected("timeouts must be positive")


def _refuse_twice(names: list[str], message: str) -> None:
    """``ConfigRejected`` with ``message`` naming the first name that comes twice."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigRejected(message.format(name))
        seen.add(name)


def _validate_rules(config: ProxyConfig) -> None:
    """Refuse route tables whose patterns do not compile, or two tables for one service."""
    _refuse_twice([table.service for table in config.routes], "two route tables for service '{}'")
    _refuse_twice(
        [policy.service for policy in config.policies], "two destination policies for service '{}'"
    )
    try:
        compile_tables(config.routes)
    except ValueError as error:
        raise ConfigRejected(f"invalid route: {error}") from None
    try:
        validate_limits(config.rate_limits)
    except ValueError as error:
        raise ConfigRejected(f"invalid rate limit: {error}") from None


@attrs.frozen(kw_only=True)
class _Binding:
    kind: str
    host: str
    port: int

    @classmethod
    def of(cls, listener: Listener) -> _Binding:
        return cls(kind=listener.kind, host=listener.host, port=listener.port)


@attrs.define(kw_only=True)
class _BoundListener:
    binding: _Binding
    port: int
    scope: trio.CancelScope


class Sidecar:
    def __init__(
        self,
        *,
        instance: str,
        control: ControlClient,
        plane: DataPlane | None = None,
        grace_period: float = GRACE_PERIOD,
        identity: SidecarIdentity | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.instance = instance
        self.control = control
        self.plane = plane if plane is not None else DataPlane()
        self.grace_period = grace_period
        self.identity = identity
        self.exit_status = 0
        if identity is not None:
            self.plane.tls = identity.contexts
        if admin_token is not None:
            self.plane.admin_token = admin_token
        self.applied_version = 0
        self.ready_reported = False
        self._bound: dict[str, _BoundListener] = {}
        self._stop = trio.Event()
        self._listener_nursery: trio.Nursery | None = None
        self._connection_nursery: trio.Nursery | None = None

    @property
    def ports(self) -> dict[str, int]:
        """The port each listener is bound to, by listener name."""
        return {name: bound.port for name, bound in self._bound.items()}

    def shutdown(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``shutdown()``; returns after the drain."""
        async with trio.open_nursery() as background:
            background.start_soon(self.plane.access_log.run_flusher)
            background.start_soon(trim_when_idle)
            await background.start(self.plane.h2_upstreams.run)
            await background.start(self.plane.mirrors.run)
            background.start_soon(ship_spans, self.plane.tracer, self.control.send_spans)
            try:
                await self._serve_until_stopped(task_status)
            finally:
                background.cancel_scope.cancel()

    async def _serve_until_stopped(self, task_status: trio.TaskStatus[None]) -> None:
        try:
            async with trio.open_nursery() as connections:
                self._connection_nursery = connections
                async with trio.open_nursery() as listeners:
                    self._listener_nursery = listeners
                    listeners.start_soon(self._subscribe)
                    if self.identity is not None:
                        listeners.start_soon(self._renew_certificates, self.identity)
                    task_status.started()
                    await self._stop.wait()
                    log.info(
                        "%s: shutting down: no new connections, draining in-flight requests",
                        self.instance,
                    )
                    listeners.cancel_scope.cancel()
                self.plane.begin_drain()
                connections.cancel_scope.deadline = trio.current_time() + self.grace_period
        finally:
            await self.plane.pool.aclose()
        if connections.cancel_scope.cancelled_caught:
            log.info("%s: grace period over, closed the remaining connections", self.instance)
        log.info("%s: stopped", self.instance)

    async def _renew_certificates(self, identity: SidecarIdentity) -> None:
        def install(contexts: MeshTlsContexts) -> None:
            self.plane.tls = contexts
            if identity.gateway_context is not None:
                self.plane.gateway_tls = identity.gateway_context

        def unrenewable() -> None:
            self.exit_status = 1
            self.shutdown()

        await identity.renew_forever(on_renewed=install, on_unrenewable=unrenewable)

    async def _subscribe(self) -> None:
        backoff = BackoffCounter(CONTROL_PLANE_BACKOFF)
        after = 0
        connected = True
        while True:
            try:
                if self.plane.ready and not self.ready_reported:
                    await self.control.report_ready(pid=os.getpid(), ports=self.ports)
                    self.ready_reported = True
                result = await self.control.poll_config(after)
                if not connected:
                    log.info("%s: control plane is back, resubscribed", self.instance)
                    connected = True
                backoff.reset()
                if result is None:
                    continue
                version, raw = result
                error = await self.apply(version, raw)
                after = version
                await self.control.acknowledge(version=version, error=error)
                if error is None and not self.ready_reported:
                    await self.control.report_ready(pid=os.getpid(), ports=self.ports)
                    self.ready_reported = True
            except ControlPlaneError as error:
                if connected:
                    log.warning(
                        "%s: %s; serving config version %d until it comes back",
                        self.instance,
                        error,
                        self.applied_version,
                    )
                    connected = False
                after = 0
                await trio.sleep(backoff.next_delay())

    async def apply(self, version: int, raw: Any) -> str | None:
        """Apply a received config; None when applied, else the reason it was rejected."""
        try:
            config = parse_config(raw, instance=self.instance)
            await self._prepare_certificates(config)
            await self._rebind(config)
        except ConfigRejected as rejected:
            log.warning("%s: rejected config version %d: %s", self.instance, version, rejected)
            return str(rejected)
        self.plane.apply(config)
        self.plane.ready = True
        self.applied_version = version
        log.info("%s: applied config version %d", self.instance, version)
        return None

    async def _prepare_certificates(self, config: ProxyConfig) -> None:
        """Check the config's identity and get the gateway's HTTPS certificate if it needs one."""
        identity = self.identity
        if identity is not None and config.identity and config.identity != identity.spiffe_id:
            raise ConfigRejected(
                f"config is for identity {config.identity}, this sidecar's certificate is "
                f"{identity.spiffe_id}"
            )
        if not any(listener.tls for listener in config.listeners):
            return
        if identity is None:
            raise ConfigRejected("an HTTPS listener needs a certificate; this sidecar has none")
        try:
            self.plane.gateway_tls = await identity.gateway_https_context()
        except (IdentityError, ControlPlaneError) as error:
            raise ConfigRejected(f"no HTTPS certificate for the gateway: {error}") from None

    async def _rebind(self, config: ProxyConfig) -> None:
        """Bind new or changed listeners, then release removed ones (all or nothing)."""
        assert self._listener_nursery is not None and self._connection_nursery is not None
        wanted = {listener.name: listener for listener in config.listeners}
        changed = [
            listener
            for listener in config.listeners
            if listener.name not in self._bound
            or self._bound[listener.name].binding != _Binding.of(listener)
        ]
        opened: dict[str, list[trio.SocketListener]] = {}
        try:
            for listener in changed:
                try:
                    opened[listener.name] = await trio.open_tcp_listeners(
                        listener.port, host=listener.host
                    )
                except OSError as error:
                    raise ConfigRejected(
                        f"cannot listen on {listener.host}:{listener.port} for listener "
                        f"'{listener.name}': {error.strerror or error}"
                    ) from None
        except ConfigRejected:
            for sockets in opened.values():
                for socket_listener in sockets:
                    await socket_listener.aclose()
            raise
        for name in list(self._bound):
            if name not in wanted or name in opened:
                self._bound.pop(name).scope.cancel()
        for name, sockets in opened.items():
            scope = await self._listener_nursery.start(self._serve, name, sockets)
            port = sockets[0].socket.getsockname()[1]
            self._bound[name] = _BoundListener(
                binding=_Binding.of(wanted[name]), port=port, scope=scope
            )
            log.info(
                "%s: listener '%s' (%s) on %s:%d",
                self.instance,
                name,
                wanted[name].kind,
                wanted[name].host,
                port,
            )

    async def _serve(
        self,
        name: str,
        sockets: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        assert self._connection_nursery is not None
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await serve_listener(self.plane, name, sockets, self._connection_nursery)
