"""What every connection of a sidecar shares: the applied config and the machinery.

The config is an immutable snapshot swapped in one assignment; a request reads
``DataPlane.config`` once when its head arrives and keeps that snapshot to the
end, so a config update never changes a request half-way.
"""

from __future__ import annotations

import random
import ssl
import time

import trio

from meshkit.ca.tls import MeshTlsContexts
from meshkit.proxy.codec.headers import REQUEST_ID_HEADER
from meshkit.proxy.codec.messages import RequestHead, header_value
from meshkit.proxy.config import Limits, Listener, ProxyConfig
from meshkit.proxy.flow.mirror import Mirrors
from meshkit.proxy.net.h2upstream import H2Upstreams
from meshkit.proxy.net.pool import ConnectionPool
from meshkit.proxy.policy.admission import StreamAdmission
from meshkit.proxy.policy.destinations import Destinations
from meshkit.proxy.policy.ratelimit import RateLimiter
from meshkit.proxy.telemetry.accesslog import AccessLog
from meshkit.proxy.telemetry.calls import CallLog
from meshkit.proxy.telemetry.metrics import Metrics
from meshkit.proxy.telemetry.spans import Tracer

DEFAULT_LIMITS = Limits()


class DataPlane:
    def __init__(self, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.config: ProxyConfig | None = None
        self.ready = False
        self.draining = False
        # Breakers, outlier detectors, retry budgets and balancers per
        # destination service: they outlive config swaps (``Destinations.sync``).
        self.destinations = Destinations(
            clock=trio.current_time, wall_clock=time.time, random=random.Random()
        )
        # Local rate limits of this instance's service (the inbound filter).
        self.rate_limiter = RateLimiter(clock=trio.current_time)
        # Mirrored copies, owned by ``mirrors.run`` (the sidecar runs it for its life).
        self.mirrors = Mirrors()
        # Spans of the requests this sidecar answers, shipped by the sidecar's ``ship_spans``.
        self.tracer = Tracer()
        self.metrics = Metrics(tracer=self.tracer)
        # The requests the inbound listener served (admin ``/calls``).
        self.calls = CallLog()
        self.access_log = AccessLog()
        # Multiplexed HTTP/2 connections (to h2 apps and between sidecars), owned
        # by ``h2_upstreams.run`` (the sidecar runs it for its life).
        self.h2_upstreams = H2Upstreams()
        self.pool = ConnectionPool(
            max_idle_per_key=limits.pool_idle_per_endpoint, max_idle_age=limits.idle_timeout / 2
        )
        self._idle_waits: set[trio.CancelScope] = set()
        # Requests in flight per listener (HTTP/2 streams, HTTP/1.1 requests), all connections.
        self.stream_admission: dict[str, StreamAdmission] = {}
        # Transport security, each replaced as a whole on renewal: new
        # connections take the current value, open ones keep what they used.
        self.tls: MeshTlsContexts | None = None
        self.gateway_tls: ssl.SSLContext | None = None
        # The mesh's token (``meshkit.api.access``): None answers no admin request.
        self.admin_token: str | None = None

    def admission(self, listener_name: str) -> StreamAdmission:
        """The requests in flight on ``listener_name``: HTTP/2 streams and HTTP/1.1 requests."""
        return self.stream_admission.setdefault(listener_name, StreamAdmission())

    @property
    def local_identity(self) -> str | None:
        """This sidecar's SPIFFE ID, once it has a certificate."""
        return None if self.tls is None else self.tls.identity

    @property
    def limits(self) -> Limits:
        return DEFAULT_LIMITS if self.config is None else self.config.limits

    def listener(self, config: ProxyConfig, name: str) -> Listener | None:
        for listener in config.listeners:
            if listener.name == name:
                return listener
        return None

    def apply(self, config: ProxyConfig) -> None:
        """Make ``config`` the snapshot new requests see (requests in flight keep theirs)."""
        self.config = config
        self.pool.max_idle_per_key = config.limits.pool_idle_per_endpoint
        self.pool.max_idle_age = config.limits.idle_timeout / 2

    def register_idle_wait(self, scope: trio.CancelScope) -> None:
        """A connection waiting for its next request; cancelled when draining starts."""
        if self.draining:
            scope.cancel()
        self._idle_waits.add(scope)

    def unregister_idle_wait(self, scope: trio.CancelScope) -> None:
        self._idle_waits.discard(scope)

    def begin_drain(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their response."""
        self.draining = True
        self.h2_upstreams.begin_drain()
        for scope in self._idle_waits:
            scope.cancel()

    def record_call(
        self, head: RequestHead, *, status: int, started: float, flag: str, caller: str | None
    ) -> None:
        """Add a request the inbound listener answered to the call log (admin ``/calls``),
        dated when it arrived (``started``, on trio's clock): the log is written after the
        response is sent, so a caller may already have moved on by then."""
        request_id = header_value(head.headers, REQUEST_ID_HEADER)
        elapsed = trio.current_time() - started
        self.calls.record(
            time=time.time() - elapsed,
            method=head.method.decode("ascii", "replace"),
            path=head.target.decode("ascii", "replace"),
            status=status,
            caller=caller,
            duration_ms=elapsed * 1000,
            flag=flag,
            request_id=None if request_id is None else request_id.decode("ascii", "replace"),
        )

    def log_access(
        self,
        head: RequestHead,
        *,
        status: int,
        started: float,
        flag: str,
        upstream: str | None = None,
        bytes_in: int = 0,
        bytes_out: int = 0,
        trace_id: str | None = None,
    ) -> None:
        self.access_log.record(
            method=head.method,
            target=head.target,
            status=status,
            duration_ms=(trio.current_time() - started) * 1000,
            flag=flag,
            upstream=upstream,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            request_id=header_value(head.headers, REQUEST_ID_HEADER),
            trace_id=trace_id,
        )
