"""The control plane's observe server: the mesh's Prometheus endpoint, the dashboard and its API.

Served on 127.0.0.1 (a free port unless one is asked for); every answer
needs the token of ``meshkit.api.access``.  At start the server writes
``.meshkit/run/observe.json`` (``{"url", "port"}``) for ``meshkit dashboard``
and the tests.

* ``GET /metrics``: every sidecar's ``/metrics`` read now (concurrently, 2 s
  each) and merged, each series labelled with its instance
  (``meshkit.observe.federate``).
* ``GET /api/traces``: the newest traces; ``GET /api/traces/<trace or request id>``:
  one trace as a tree of spans (``meshkit.observe.spans``).
* ``GET /``: the dashboard (``meshkit/observe/static/``; ``/?token=`` sets the
  cookie and sends the browser on to ``/``); ``GET /api/graph``: the service
  graph (``meshkit.observe.graph``); ``GET /api/calls/<service>``: the last
  requests its sidecars served; ``/api/control/{status,faults,instances/<id>/config}``:
  those parts of the control API, changes only from the page's own origin.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

import attrs
import trio

from meshkit.api import access
from meshkit.observe.federate import Scrape, federate
from meshkit.observe.graph import GraphTracker
from meshkit.observe.http import Request, Response, get, serve_http
from meshkit.observe.spans import SpanStore, tree
from meshkit.observe.static import static_file
from meshkit.proxy.policy.hosts import HostAllowList
from meshkit.registry.server.api import BadRequest, ControlServer
from meshkit.registry.state import Registry, RegistryError

ADDRESS_FILE = "observe.json"
SCRAPE_TIMEOUT = 2.0
LOOPBACK_ONLY = HostAllowList.of()
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _json(status: int, document: object) -> Response:
    return Response(status=status, body=json.dumps(document).encode() + b"\n")


def _text(status: int, text: str) -> Response:
    return Response(
        status=status, body=(text + "\n").encode(), content_type="text/plain; charset=utf-8"
    )


async def scrape_sidecars(
    registry: Registry, *, token: str, timeout: float = SCRAPE_TIMEOUT
) -> list[Scrape]:
    """Every ready sidecar's ``/metrics``, read concurrently (None for one that did not answer).

    ``token`` is the mesh's, which the sidecars' admin listeners ask for.
    """
    targets = [(record.id, record.admin_port) for record in registry.instances()]
    pages: dict[str, bytes | None] = {}

    async def read(instance: str, port: int) -> None:
        pages[instance] = await get(port, "/metrics", token=token, timeout=timeout)

    async with trio.open_nursery() as nursery:
        for instance, port in targets:
            if port is not None:
                nursery.start_soon(read, instance, port)
    return [
        Scrape(instance=instance, text=None if page is None else page.decode("utf-8", "replace"))
        for instance, page in sorted(pages.items())
    ]


@attrs.define(eq=False)
class ObserveServer:
    """The observe server of the mesh of ``registry`` (see the module), on ``port`` (0: any)."""

    registry: Registry
    spans: SpanStore = attrs.field(kw_only=True)
    control: ControlServer = attrs.field(kw_only=True)
    run_dir: Path = attrs.field(kw_only=True)
    port: int = attrs.field(kw_only=True, default=0)
    token: str = attrs.field(init=False, factory=access.new_token)
    bound_port: int | None = attrs.field(init=False, default=None)
    graph: GraphTracker = attrs.field(
        init=False, factory=lambda: GraphTracker(clock=time.monotonic)
    )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.bound_port}"

    @property
    def dashboard_url(self) -> str:
        return f"{self.base_url}/?token={self.token}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; report the bound port; remove the address and token files after."""
        access.write_token(self.run_dir, self.token)
        address = self.run_dir / ADDRESS_FILE
        try:
            async with trio.open_nursery() as nursery:
                self.bound_port = await nursery.start(
                    partial(serve_http, self.handle, port=self.port)
                )
                _write_address(address, self.base_url, self.bound_port)
                task_status.started(self.bound_port)
        finally:
            address.unlink(missing_ok=True)
            (self.run_dir / access.TOKEN_FILE).unlink(missing_ok=True)

    async def handle(self, request: Request) -> Response:
        if not LOOPBACK_ONLY.allows(request.headers.get("host")):
            # DNS rebinding: a page that pointed its own name at 127.0.0.1.
            shown = request.headers.get("host", "")
            return _text(
                403, f"Host {shown!r} is not loopback; open the address 'meshkit up' printed"
            )
        if not access.allowed(self.token, query=request.query, headers=request.headers):
            return _text(
                401,
                "this page needs the mesh's token: open the address 'meshkit up' "
                "printed, run 'meshkit dashboard', or send the token in "
                f".meshkit/run/{access.TOKEN_FILE} as 'Authorization: Bearer'",
            )
        if request.path.startswith("/api/control/"):
            return await self._control(request)
        if request.method not in ("GET", "HEAD"):
            return _text(405, f"method {request.method} not allowed on {request.path}")
        if request.path == "/" and access.token_in_query(request.query) is not None:
            # The address printed at start: keep the token as a cookie, drop it from the URL.
            return Response(
                status=303,
                content_type="text/plain",
                headers=(("Location", "/"), ("Set-Cookie", access.session_cookie(self.token))),
            )
        if request.path == "/metrics":
            return Response(
                status=200,
                body=federate(await scrape_sidecars(self.registry, token=self.token)).encode(),
                content_type=PROMETHEUS_TEXT,
            )
        if request.path == "/api/graph":
            scrape = federate(await scrape_sidecars(self.registry, token=self.token))
            return _json(200, self.graph.graph(scrape))
        if request.path == "/api/traces":
            return _json(200, {"traces": self.spans.recent_traces()})
        if request.path.startswith("/api/traces/"):
            return self._trace(request.path.removeprefix("/api/traces/"))
        if request.path.startswith("/api/calls/"):
            return _json(
                200, {"calls": self.spans.last_calls(request.path.removeprefix("/api/calls/"))}
            )
        return static_file(request.path)

    async def _control(self, request: Request) -> Response:
        """The part of the control API the page uses: status, faults, an instance's config."""
        route = request.path.removeprefix("/api/control/")
        first = route.split("/", 1)[0]
        readable = first in ("status", "instances") and request.method == "GET"
        if not (readable or first == "faults"):
            return _json(403, {"error": f"the dashboard may not call /v1/{route}"})
        if (
            request.method != "GET"
            and request.headers.get("origin", self.base_url) != self.base_url
        ):
            return _json(403, {"error": "changes are accepted from the dashboard's own page only"})
        target = f"/v1/{route}" + (f"?{request.query}" if request.query else "")
        try:
            reply = await self.control.dispatch(request.method, target, request.body)
        except BadRequest as error:
            return _json(error.status, {"error": error.reason})
        except RegistryError as error:
            return _json(404, {"error": str(error)})
        return _json(reply.status, reply.body)

    def _trace(self, wanted: str) -> Response:
        spans = self.spans.trace(wanted)
        if not spans:
            return _json(
                404,
                {"error": f"no trace or request '{wanted}' among the last {len(self.spans)} spans"},
            )
        return _json(
            200, {"trace_id": spans[0].trace_id, "spans": [node.to_dict() for node in tree(spans)]}
        )


def _write_address(path: Path, url: str, port: int) -> None:
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"url": url, "port": port}, file)
    os.replace(temporary, path)


def read_address(run_dir: Path) -> dict[str, object] | None:
    """The running observe server's ``{"url", "port"}``, or None."""
    try:
        document = json.loads((run_dir / ADDRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None
