"""The sidecar's start and first requests, rehearsed in the template before it forks.

A forked sidecar copies every page of the template it writes to.  Most of
what a new sidecar wrote in its first 0.2 s was work done once per process
and the same in each: the first key and certificate (OpenSSL's and
cryptography's lazily built tables), the argument parser, the first config
through the converter, the first listener, the first TLS handshakes, and
CPython specialising the byte code of every function on the path.  Done
here, once, before ``gc.freeze``, that work lands in pages every sidecar
shares.

``rehearse`` runs two real ``Sidecar`` objects in one ``trio.run``, each
with its own certificate from a throw-away root: a caller with an outbound
listener and a callee with an inbound listener in front of a small app, all
on 127.0.0.1 port 0, and sends a few keep-alive requests through them over
mTLS.  The control plane is played by ``_Conductor`` (no socket).  Nothing
is logged, nothing outlives the call (its sockets, tasks and temporary key
files are gone when it returns, and it starts no thread), and no key or
certificate of it is ever used again: a sidecar makes its own key after the
fork.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric import ec

from meshkit.api.control import ControlClient
from meshkit.ca.exchange import answer_certificate_request
from meshkit.ca.issuer import Issuer
from meshkit.ca.root import RootCA, self_signed_root
from meshkit.ca.spiffe import spiffe_id
from meshkit.proxy.__main__ import build_parser
from meshkit.proxy.config import AppTarget, Cluster, Endpoint, Listener, ProxyConfig
from meshkit.proxy.flow.dataplane import DataPlane
from meshkit.proxy.identity import SidecarIdentity
from meshkit.proxy.sidecar import Sidecar
from meshkit.proxy.telemetry.accesslog import AccessLog
from meshkit.proxy.wire import config_to_dict

MESH = "rehearsal"
REQUESTS = 24
"""Requests sent through the pair: enough for CPython to specialise the hot code."""
TIME_LIMIT = 10.0
"""Seconds after which the rehearsal gives up (it takes ~0.1 s)."""
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


class RehearsalError(Exception):
    """The rehearsal did not get its answers (the template forks without it)."""


class _Conductor(ControlClient):
    """The control plane's part for one rehearsing sidecar: one config, certificates, sinks."""

    def __init__(self, *, instance: str, issuer: Issuer, config: ProxyConfig) -> None:
        super().__init__(socket_path="/nonexistent", instance=instance)
        self.issuer = issuer
        self.config = config
        self.ready = trio.Event()
        self.ports: dict[str, int] = {}

    async def poll_config(self, after: int) -> tuple[int, Any] | None:
        if after >= self.config.version:
            await trio.sleep_forever()
        return self.config.version, config_to_dict(self.config)

    async def report_ready(self, *, pid: int, ports: dict[str, int]) -> None:
        self.ports = ports
        self.ready.set()

    async def acknowledge(self, *, version: int, error: str | None) -> None:
        if error is not None:
            raise RehearsalError(f"config refused: {error}")

    async def send_spans(self, spans: list[list[Any]]) -> None:
        return None

    async def request_certificate(self, body: dict[str, str]) -> tuple[int, Any]:
        return 200, answer_certificate_request(self.issuer, body)


def rehearse() -> None:
    """Rehearse once (``RehearsalError`` if it went wrong); quiet, no thread, nothing left."""
    build_parser().parse_args(["--instance", "rehearsal", "--control", "/nonexistent"])
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        trio.run(_rehearse)
    finally:
        logging.disable(previous)


async def _rehearse() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    root = RootCA(
        certificate=self_signed_root(key, mesh=MESH, now=time.time()),
        private_key=key,
        path=Path("/nonexistent"),
    )
    issuer = Issuer(root=root)
    with trio.fail_after(TIME_LIMIT):
        async with trio.open_nursery() as nursery:
            app = (await nursery.start(partial(trio.serve_tcp, _app, 0, host="127.0.0.1")))[0]
            callee = await _start(nursery, issuer, _callee_config(app.socket.getsockname()[1]))
            caller = await _start(nursery, issuer, _caller_config(callee.ports["inbound"]))
            await _requests(caller.ports["outbound"])
            nursery.cancel_scope.cancel()


async def _start(nursery: trio.Nursery, issuer: Issuer, config: ProxyConfig) -> _Conductor:
    conductor = _Conductor(instance=config.instance, issuer=issuer, config=config)
    identity = SidecarIdentity(spiffe_id=config.identity, control=conductor)
    await identity.bootstrap(issuer.tokens.issue(config.identity, ttl=TIME_LIMIT))
    plane = DataPlane()
    plane.access_log = AccessLog(write=_discard)
    sidecar = Sidecar(instance=config.instance, control=conductor, plane=plane, identity=identity)
    nursery.start_soon(sidecar.run)
    await conductor.ready.wait()
    return conductor


def _discard(_line: bytes) -> None:
    return None


def _callee_config(app_port: int) -> ProxyConfig:
    return ProxyConfig(
        version=1,
        mesh=MESH,
        instance="callee-0",
        service="callee",
        app=AppTarget(port=app_port),
        listeners=(Listener(name="inbound", kind="inbound"), Listener(name="admin", kind="admin")),
        clusters=(Cluster(name="callee"), Cluster(name="caller")),
        identity=spiffe_id(MESH, "callee"),
        allowed_hosts=("callee",),
    )


def _caller_config(callee_port: int) -> ProxyConfig:
    endpoint = Endpoint(
        instance="callee-0", host="127.0.0.1", port=callee_port, identity=spiffe_id(MESH, "callee")
    )
    return ProxyConfig(
        version=1,
        mesh=MESH,
        instance="caller-0",
        service="caller",
        listeners=(
            Listener(name="outbound", kind="outbound"),
            Listener(name="admin", kind="admin"),
        ),
        clusters=(Cluster(name="callee", endpoints=(endpoint,)), Cluster(name="caller")),
        identity=spiffe_id(MESH, "caller"),
        allowed_hosts=("callee", "caller"),
    )


async def _app(stream: trio.SocketStream) -> None:
    """Answer every request head with ``RESPONSE`` (the rehearsal sends no bodies)."""
    buffer = b""
    async with stream:
        while data := await stream.receive_some():
            buffer += data
            while b"\r\n\r\n" in buffer:
                _head, buffer = buffer.split(b"\r\n\r\n", 1)
                await stream.send_all(RESPONSE)


async def _requests(port: int) -> None:
    request = b"GET /rehearsal HTTP/1.1\r\nhost: callee\r\n\r\n"
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        for _ in range(REQUESTS):
            await stream.send_all(request)
            answer = b""
            while not answer.endswith(b"\r\n\r\nok"):
                data = await stream.receive_some()
                if not data:
                    raise RehearsalError(f"the caller closed the connection after {answer!r}")
                answer += data
            if not answer.startswith(b"HTTP/1.1 200 "):
                raise RehearsalError(f"answered {answer[:200]!r}")
