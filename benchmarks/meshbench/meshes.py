"""The meshes the commands run: the example shop, and generated meshes of tiny apps.

The example is copied (``meshfile.example.py`` and ``examples/shop/`` without
its tests) into a directory of its own, so nothing is written into the
repository and two runs never share a ``.meshkit/``.

A generated mesh has ``services`` services of ``replicas`` instances each; the
app is ten lines of ``socket`` (so an app costs an interpreter start and no
more), health is the default TCP connect, service *i* calls service *i + 1*,
and every service has a route whose timeout ``revision`` sets: saving the
Meshfile with another revision is a route edit that reaches every caller's
sidecar as a new config version and restarts nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLE_MESHFILE = "meshfile.example.py"
EXAMPLE_INSTANCES = 5  # catalog v1 x2, catalog v2, reviews, frontend

TINY_APP = '''\
"""Written by a meshkit benchmark: answers any request with 200 "ok", one at a time."""
import os
import socket

listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
while True:
    try:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(2)
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\nconnection: close\\r\\n\\r\\nok")
    except OSError:
        pass
'''


def copy_example(directory: Path, *, extra_catalog_replicas: int = 0) -> Path:
    """The example shop in ``directory``; ``extra_catalog_replicas`` more of catalog v1.

    Returns the Meshfile's path.
    """
    directory.mkdir(parents=True, exist_ok=True)
    shop = directory / "examples" / "shop"
    shutil.copytree(
        REPOSITORY / "examples" / "shop", shop, ignore=shutil.ignore_patterns("tests", "__pycache__")
    )
    text = (REPOSITORY / EXAMPLE_MESHFILE).read_text()
    if extra_catalog_replicas:
        if text.count("replicas=2") != 1:
            raise ValueError(f"{EXAMPLE_MESHFILE} no longer declares catalog v1 with replicas=2")
        text = text.replace("replicas=2", f"replicas={2 + extra_catalog_replicas}")
    meshfile = directory / EXAMPLE_MESHFILE
    meshfile.write_text(text)
    return meshfile


def example_instances(extra_catalog_replicas: int = 0) -> int:
    return EXAMPLE_INSTANCES + extra_catalog_replicas


def tiny_meshfile(*, services: int, replicas: int, revision: int) -> str:
    lines = [
        '"""Written by a meshkit benchmark: a chain of tiny services."""',
        "from meshkit import Mesh",
        "",
        'mesh = Mesh("bench")',
        'APP = "python tiny_app.py"',
    ]
    for index in range(services):
        upstreams = [f"svc{index + 1}"] if index + 1 < services else []
        lines.append(
            f'mesh.service("svc{index}", run=APP, replicas={replicas}, upstreams={upstreams!r})'
        )
        lines.append(f'mesh.route("svc{index}", timeout="{1000 + revision}ms")')
    return "\n".join(lines) + "\n"


def write_tiny_mesh(directory: Path, *, services: int, replicas: int, revision: int = 0) -> Path:
    """Write ``Meshfile.py`` and ``tiny_app.py`` into ``directory``; return the Meshfile."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tiny_app.py").write_text(TINY_APP)
    meshfile = directory / "Meshfile.py"
    meshfile.write_text(tiny_meshfile(services=services, replicas=replicas, revision=revision))
    return meshfile
