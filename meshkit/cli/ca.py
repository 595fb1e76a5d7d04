"""``meshkit ca``: where the mesh's root certificate is, and how to trust it.

Creates the root under ``.meshkit/ca/`` in the current directory on first use.
The mesh name (only used to name a new root) comes from the ``Mesh("...")``
call of the Meshfile given with ``-f`` (or ``./Meshfile.py``), read without
running it; otherwise it is ``default``.  When a mesh runs in this directory,
the ``curl`` line names its gateway's real HTTPS address.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from meshkit.api.control import ControlPlaneError, request_json_blocking
from meshkit.ca import CaError, RootCA
from meshkit.ca.root import write_file_atomically
from meshkit.cli.control import CONTROL_SOCKET

STATE_DIRECTORY = Path(".meshkit")
DEFAULT_MESHFILE = Path("Meshfile.py")
DEFAULT_MESH_NAME = "default"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ca",
        help="show the mesh's root certificate (path, subject, SHA-256 fingerprint)",
        description="Show where the mesh's root certificate is, creating it if needed, "
        "so that curl or a browser can trust the gateway's TLS port.",
    )
    parser.add_argument(
        "-f",
        "--file",
        type=Path,
        default=None,
        help="the Meshfile whose mesh name names a new root (default: ./Meshfile.py if present)",
    )
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the root certificate (PEM) to PATH",
    )


def mesh_name_in(meshfile: Path) -> str | None:
    """The literal name given to ``Mesh(...)`` in ``meshfile``, found without running it."""
    tree = ast.parse(meshfile.read_text(encoding="utf-8"), filename=str(meshfile))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        called = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", None)
        if called != "Mesh":
            continue
        candidates = [*node.args[:1], *(kw.value for kw in node.keywords if kw.arg == "name")]
        for candidate in candidates:
            if isinstance(candidate, ast.Constant) and isinstance(candidate.value, str):
                return candidate.value
    return None


def _mesh_name(meshfile: Path | None) -> str:
    if meshfile is None:
        if not DEFAULT_MESHFILE.exists():
            return DEFAULT_MESH_NAME
        meshfile = DEFAULT_MESHFILE
    return mesh_name_in(meshfile) or DEFAULT_MESH_NAME


def _gateway_https_url() -> str:
    """The running mesh's gateway HTTPS URL, or a placeholder saying why there is none."""
    placeholder = "https://localhost:<gateway TLS port>/"
    if not CONTROL_SOCKET.exists():
        return f"{placeholder}  (no mesh runs here; 'meshkit status' shows it once up)"
    try:
        code, answer = request_json_blocking(CONTROL_SOCKET, "GET", "/v1/status", timeout=2.0)
    except ControlPlaneError:
        return f"{placeholder}  (the mesh here did not answer)"
    gateways = answer.get("gateways") if code == 200 and isinstance(answer, dict) else None
    if not gateways:
        return f"{placeholder}  (the running mesh has no gateway)"
    tls_url = gateways[0].get("tls_url")
    if not tls_url:
        return (
            f"{placeholder}  (the running gateway has no HTTPS port: "
            "mesh.gateway(tls_port=...) or meshkit up --gateway-tls-port)"
        )
    return f"{tls_url}/"


def run(args: argparse.Namespace) -> int:
    try:
        mesh = _mesh_name(args.file)
    except (OSError, SyntaxError, UnicodeDecodeError) as error:
        print(f"meshkit ca: cannot read the Meshfile {args.file}: {error}", file=sys.stderr)
        return 2
    try:
        root = RootCA.load_or_create(STATE_DIRECTORY / "ca", mesh=mesh)
    except (CaError, OSError, ValueError) as error:
        print(f"meshkit ca: {error}", file=sys.stderr)
        return 1
    path = root.path.resolve()
    print(f"root certificate: {path}")
    print(f"subject:          {root.subject}")
    print(f"SHA-256:          {root.fingerprint_sha256}")
    print(f"valid until:      {root.certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    print(f"trust it with:    curl --cacert {path} {_gateway_https_url()}")
    if args.export is not None:
        try:
            write_file_atomically(args.export, root.pem, mode=0o644)
        except OSError as error:
            print(f"meshkit ca: cannot write {args.export}: {error}", file=sys.stderr)
            return 1
        print(f"exported to:      {args.export}")
    return 0
