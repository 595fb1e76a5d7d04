"""The hop through meshkit itself: ``meshkit up`` on a generated Meshfile.

Two services in a mesh called ``bench``:

- ``backend``: the same nginx 1 KiB backend as the other setups, on ``$PORT``
  (``start_backend.py`` writes its configuration from the environment, then
  execs nginx);
- ``loadgen``: a tiny HTTP server on ``$PORT`` (so that a TCP health check
  passes) with ``upstreams=["backend"]``; the load generator is pointed at its
  sidecar's local port for ``backend``.

The contract with ``meshkit status --json`` (run in the Meshfile's directory):
``"ready": true`` once every instance is healthy, and per instance (under
``services[].instances[]``, or a top-level ``instances``) its ``sidecar_pid``
and ``"upstream_ports": {"backend": PORT}``.  Until status carries
``upstream_ports``, the port comes from the ``BACKEND_URL`` the supervisor gives
the loadgen app, which writes it to a file.  The loadgen sidecar is the
outbound proxy, the backend sidecar the inbound one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .nginx import backend_conf, nginx_argv
from .procs import BenchError, Servers, log_tail

READY_TIMEOUT_SECONDS = 90.0
PORT_PLACEHOLDER = "__MESHKIT_PORT__"
UPSTREAM_FILE = "loadgen-upstream.json"

START_BACKEND = '''\
"""Written by benchmarks/hop.py: nginx serving 1 KiB on $PORT, in the foreground."""
import os
from pathlib import Path

prefix = Path({prefix!r})
prefix.mkdir(parents=True, exist_ok=True)
conf = prefix / "nginx.conf"
conf.write_text({conf!r}.replace({placeholder!r}, os.environ["PORT"]))
argv = {argv!r}
os.execvp(argv[0], argv)
'''

LOADGEN_APP = '''\
"""Written by benchmarks/hop.py: the loadgen service only needs to be healthy.

It also writes down where its sidecar's port for ``backend`` is (BACKEND_URL),
for the benchmark to use when ``meshkit status --json`` does not say.
"""
import http.server
import json
import os
import os
from pathlib import Path

found = {{"BACKEND_URL": os.environ.get("BACKEND_URL")}}
Path({upstream_file!r}).write_text(json.dumps(found))


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Ok).serve_forever()
'''

MESHFILE = '''\
"""Written by benchmarks/hop.py: one hop, loadgen -> backend."""
from meshkit import Mesh, tcp_connect

mesh = Mesh("bench")
mesh.service("backend", run={backend_run!r}, health=tcp_connect())
mesh.service("loadgen", run={loadgen_run!r}, upstreams=["backend"], health=tcp_connect())
'''


@attrs.frozen(kw_only=True)
class MeshkitHop:
    """Where to send load, and the two sidecars to measure."""

    url: str
    outbound_pid: int
    inbound_pid: int
    control_plane_pid: int


def write_mesh(directory: Path) -> Path:
    """Write the Meshfile and the two apps into ``directory``; return the Meshfile's path."""
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / "backend-nginx"
    conf = backend_conf(prefix=prefix, port=PORT_PLACEHOLDER)
    start_backend = directory / "start_backend.py"
    start_backend.write_text(
        START_BACKEND.format(
            prefix=str(prefix),
            conf=conf,
            placeholder=PORT_PLACEHOLDER,
            argv=nginx_argv(conf=prefix / "nginx.conf", prefix=prefix),
        )
    )
    loadgen = directory / "loadgen_app.py"
    loadgen.write_text(LOADGEN_APP.format(upstream_file=str(directory / UPSTREAM_FILE)))
    meshfile = directory / "Meshfile.py"
    meshfile.write_text(
        MESHFILE.format(
            backend_run=f"{sys.executable} {start_backend}",
            loadgen_run=f"{sys.executable} {loadgen}",
        )
    )
    return meshfile


def _instances(status: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Instance records, from ``services[].instances[]`` or a top-level ``instances``."""
    for service in status.get("services", []):
        if isinstance(service, Mapping):
            for record in service.get("instances", []):
                if isinstance(record, Mapping):
                    yield {"service": service.get("name"), **record}
    instances = status.get("instances", [])
    if isinstance(instances, Mapping):
        for instance_id, record in instances.items():
            if isinstance(record, Mapping):
                yield {"id": instance_id, **record}
    elif isinstance(instances, list):
        yield from (record for record in instances if isinstance(record, Mapping))


def _instance_of(status: Mapping[str, Any], service: str) -> Mapping[str, Any]:
    for record in _instances(status):
        if record.get("service") == service or str(record.get("id", "")).startswith(f"{service}-"):
            return record
    raise BenchError(f"meshkit status --json lists no instance of service {service!r}: {status}")


def _backend_port(loadgen: Mapping[str, Any], directory: Path) -> int | None:
    """loadgen's sidecar port for ``backend``: from status, else from what the app wrote."""
    ports = loadgen.get("upstream_ports")
    if isinstance(ports, Mapping) and "backend" in ports:
        return int(ports["backend"])
    try:
        url = json.loads((directory / UPSTREAM_FILE).read_text()).get("BACKEND_URL")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return None if not url else urllib.parse.urlsplit(url).port


def hop_from_status(
    status: Mapping[str, Any], *, directory: Path, control_plane_pid: int
) -> MeshkitHop:
    """The URL and sidecar pids of the hop, from a ready ``meshkit status --json``."""
    loadgen = _instance_of(status, "loadgen")
    backend = _instance_of(status, "backend")
    port = _backend_port(loadgen, directory)
    try:
        outbound_pid = int(loadgen["sidecar_pid"])
        inbound_pid = int(backend["sidecar_pid"])
    except (KeyError, TypeError, ValueError) as error:
        raise BenchError(
            f"meshkit status --json gives no sidecar_pid ({error!r}) for loadgen or backend: "
            f"{json.dumps(status)[:2000]}"
        ) from error
    if port is None:
        raise BenchError(
            "cannot find loadgen's sidecar port for backend: meshkit status --json has no "
            "'upstream_ports': {'backend': PORT} for it, and the loadgen app saw no BACKEND_URL"
        )
    return MeshkitHop(
        url=f"http://127.0.0.1:{port}/",
        outbound_pid=outbound_pid,
        inbound_pid=inbound_pid,
        control_plane_pid=control_plane_pid,
    )


def read_status(directory: Path) -> Mapping[str, Any] | None:
    """``meshkit status --json`` run in ``directory``, or None while it has nothing to say."""
    completed = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "status", "--json"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if completed.returncode != 0:
        return None
    try:
        status = json.loads(completed.stdout)
    except json.JSONDecodeError:
        return None
    return status if isinstance(status, Mapping) else None


def start_meshkit_hop(
    servers: Servers, *, directory: Path, sidecar_protocol: str = "http1"
) -> MeshkitHop:
    """``meshkit up`` on a generated Meshfile; return once status says ready.

    ``sidecar_protocol`` (``http1`` or ``h2``) is what carries an HTTP/1.1
    client's requests between the sidecars (``MESHKIT_SIDECAR_PROTOCOL``).

    ``meshkit up`` is owned by ``servers`` and stopped with SIGINT, as a person
    would with Ctrl-C; anything of it still alive after the grace period is
    killed.
    """
    meshfile = write_mesh(directory)
    up = servers.start(
        name="meshkit up",
        argv=[sys.executable, "-m", "meshkit.cli", "up", "-f", str(meshfile)],
        cwd=directory,
        log_path=directory / "meshkit-up.log",
        env={**os.environ, "MESHKIT_SIDECAR_PROTOCOL": sidecar_protocol},
        stop_signal=signal.SIGINT,
    )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last_status: Mapping[str, Any] | None = None
    while time.monotonic() < deadline:
        up.ensure_running()
        last_status = read_status(directory)
        if last_status is not None and last_status.get("ready") is True:
            return hop_from_status(last_status, directory=directory, control_plane_pid=up.pid)
        time.sleep(0.25)
    raise BenchError(
        f"meshkit up did not become ready within {READY_TIMEOUT_SECONDS:.0f} s; "
        f"last status: {last_status}; its log ends with:\n{log_tail(up.log_path)}"
    )
