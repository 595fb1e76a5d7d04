"""Authorization by identity through a real mesh: every matcher kind, HTTP/1.1, HTTP/2, gRPC.

Callers are real sidecars: a request to ``frontend``'s or ``reviews``'s
outbound port (their apps' ``HTTP_PROXY``) leaves the mesh with that
service's certificate; the gateway calls with its own.  The inbound sidecar of
the called service decides from the verified certificate alone.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from meshkit.ca import Issuer, RootCA, generate_key, make_csr
from meshkit.ca.workload import private_key_pem
from meshkit.testing.calls import read_calls
from tests.meshproc import MeshProcess

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"
ECHO = f"{sys.executable} {APPS / 'reload_echo.py'}"
MESHFILE = f"""\
from meshkit import Mesh, http_get, tcp_connect

mesh = Mesh("authz")
mesh.service("catalog", run="{ECHO}", health=http_get("/healthz", period="100ms"))
mesh.service("frontend", run="{ECHO}", health=http_get("/healthz", period="100ms"),
             upstreams=["catalog"])
mesh.service("reviews", run="{ECHO}", health=http_get("/healthz", period="100ms"))
mesh.service("rpc", run="{sys.executable} {APPS / "grpc_echo.py"}", protocol="grpc",
             health=tcp_connect(period="100ms"))
mesh.allow("catalog", source="frontend", methods=["GET"], paths=["/items", "/api/*", "*.js"])
mesh.allow("catalog", source="gateway", headers={{"x-env": ["dev", "test*"]}})
mesh.allow("catalog", namespaces=["authz"], paths=["/public/*"], not_source=["reviews"])
mesh.allow("catalog", source="gateway", paths=["/from-loopback"], ip_blocks=["127.0.0.0/8"])
mesh.deny("catalog", paths=["/api/secret"], name="no-secrets")
mesh.deny("catalog", paths=["/blocked"], ip_blocks=["127.0.0.1"])
mesh.allow("rpc", source="gateway", paths=["/test.Echo/Say"])
mesh.gateway(port=0, routes={{"/test.Echo/": "rpc", "/": "catalog"}})
"""
ALLOW_FRONTEND_LINE = 10
DENY_SECRETS_LINE = 14


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("authz")
    (workdir / "Meshfile.py").write_text(MESHFILE)
    running = MeshProcess(workdir / "Meshfile.py", workdir)
    try:
        running.wait_ready(timeout=90)
        running.wait_until(lambda s: s["gateways"] and s["gateways"][0]["sync"] == "SYNCED")
        yield running
    finally:
        running.kill_everything()


def call_as(
    mesh: MeshProcess, caller: str, path: str, *, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """``method path`` to ``catalog`` through ``caller``'s sidecar (its app's HTTP_PROXY)."""
    port = mesh.instance(f"{caller}-0")["outbound_port"]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request(method, f"http://catalog{path}", headers=headers)
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "15", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def via_gateway(mesh: MeshProcess, path: str, *args: str) -> tuple[int, str, str]:
    """``path`` through the gateway with curl over HTTP/2 (prior knowledge): status, flag, body."""
    answer = curl(
        "--http2-prior-knowledge", "-D", "-", "-w", "\\n%{http_version} %{http_code}",
        *args, mesh.gateway_url() + path,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    text, _, last = answer.stdout.rpartition("\n")
    version, code = last.split()
    assert version == "2"
    flag = ""
    for line in text.splitlines():
        if line.lower().startswith("x-meshkit-flag:"):
            flag = line.split(":", 1)[1].strip()
    return int(code), flag, text


def test_a_caller_named_by_service_is_allowed_its_methods_and_paths(mesh: MeshProcess) -> None:
    for path in ("/items", "/api/list", "/static/app.js"):
        status, _, body = call_as(mesh, "frontend", path)
        assert status == 200, (path, body)
        assert b'"service": "catalog"' in body


def test_what_no_allow_policy_matches_is_403_rbac(mesh: MeshProcess) -> None:
    status, headers, body = call_as(mesh, "frontend", "/items/7")
    assert (status, headers["x-meshkit-flag"]) == (403, "RBAC"), body
    assert "matches no ALLOW policy" in headers["x-meshkit-reason"]
    assert f"Meshfile.py:{ALLOW_FRONTEND_LINE}" in headers["x-meshkit-reason"]
    status, headers, _ = call_as(mesh, "frontend", "/items", method="DELETE")
    assert (status, headers["x-meshkit-flag"]) == (403, "RBAC")


def test_another_service_is_denied(mesh: MeshProcess) -> None:
    status, headers, _ = call_as(mesh, "reviews", "/items")
    assert (status, headers["x-meshkit-flag"]) == (403, "RBAC")
    assert "from 'reviews'" in headers["x-meshkit-reason"]


def test_identity_headers_from_the_caller_change_nothing(mesh: MeshProcess) -> None:
    frontend = "spiffe://meshkit.local/ns/authz/sa/frontend"
    status, headers, _ = call_as(
        mesh,
        "reviews",
        "/items",
        **{
            "x-forwarded-client-cert": f"By=spiffe://meshkit.local/ns/authz/sa/catalog;URI={frontend}",
            "x-meshkit-caller": "frontend",
        },
    )
    assert (status, headers["x-meshkit-flag"]) == (403, "RBAC")


def test_deny_comes_first_and_names_its_policy_and_line(mesh: MeshProcess) -> None:
    status, headers, _ = call_as(mesh, "frontend", "/api/secret")
    assert (status, headers["x-meshkit-flag"]) == (403, "RBAC")
    reason = headers["x-meshkit-reason"]
    assert "policy 'no-secrets'" in reason and f"Meshfile.py:{DENY_SECRETS_LINE}" in reason


def test_namespace_and_not_source(mesh: MeshProcess) -> None:
    assert call_as(mesh, "frontend", "/public/x")[0] == 200
    assert call_as(mesh, "reviews", "/public/x")[0] == 403


def test_header_values_over_http2_through_the_gateway(mesh: MeshProcess) -> None:
    assert via_gateway(mesh, "/anything", "-H", "x-env: dev")[:2] == (200, "")
    assert via_gateway(mesh, "/anything", "-H", "x-env: testing")[:2] == (200, "")
    assert via_gateway(mesh, "/anything", "-H", "x-env: prod")[:2] == (403, "RBAC")
    assert via_gateway(mesh, "/anything")[:2] == (403, "RBAC")


def test_client_address_rules_are_the_gateways(mesh: MeshProcess) -> None:
    assert via_gateway(mesh, "/from-loopback")[:2] == (200, "")
    status, flag, text = via_gateway(mesh, "/blocked", "-H", "x-env: dev")
    assert (status, flag) == (403, "RBAC"), text
    # Not through the gateway: no client address, the ALLOW rule does not hold.
    assert call_as(mesh, "frontend", "/from-loopback")[0] == 403


def test_http1_through_the_gateway(mesh: MeshProcess) -> None:
    answer = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", mesh.gateway_url() + "/x")
    assert answer.stdout == "403"
    answer = curl(
        "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "x-env: dev", mesh.gateway_url() + "/x"
    )  # fmt: skip
    assert answer.stdout == "200"


def _identity(data: bytes) -> bytes:
    return data


def test_grpc_denial_is_permission_denied(mesh: MeshProcess) -> None:
    with grpc.insecure_channel(mesh.gateway_url().removeprefix("http://")) as channel:
        say = channel.unary_unary(
            "/test.Echo/Say", request_serializer=_identity, response_deserializer=_identity
        )
        assert say(b"hi", timeout=15) == b"echo:hi"
        count = channel.unary_unary(
            "/test.Echo/Count", request_serializer=_identity, response_deserializer=_identity
        )
        with pytest.raises(grpc.RpcError) as raised:
            count(b"3", timeout=15)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "matches no ALLOW policy" in raised.value.details()
    assert dict(raised.value.trailing_metadata() or ())["x-meshkit-flag"] == "RBAC"


def test_denials_show_in_the_calls(mesh: MeshProcess) -> None:
    started = time.time()
    call_as(mesh, "reviews", "/seen-denied")
    calls = [
        c
        for c in read_calls(mesh.status(), "catalog", run_dir=mesh.run_dir, since=started - 1)
        if c.path == "/seen-denied"
    ]
    assert [(c.status, c.flag, c.caller) for c in calls] == [(403, "RBAC", "reviews")]
    log = mesh.workdir / ".meshkit" / "logs" / "catalog-0.proxy.log"
    deadline = time.monotonic() + 30
    while not any("/seen-denied" in line and "RBAC" in line for line in _lines(log)):
        assert time.monotonic() < deadline, "the access log shows no denial"
        time.sleep(0.2)


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def _tls_client(mesh: MeshProcess, identity: str, directory: Path) -> ssl.SSLContext:
    """A client context with a certificate for ``identity`` signed by the mesh's own root."""
    root_dir = mesh.workdir / ".meshkit" / "ca"
    issuer = Issuer(root=RootCA.load(root_dir))
    key = generate_key()
    cert = issuer.sign_csr(make_csr(key, identity), issuer.tokens.issue(identity, ttl=60))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(cert)
    (directory / "key.pem").write_bytes(private_key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(root_dir / "root.pem")
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


def _exchange(port: int, context: ssl.SSLContext) -> bytes:
    """What the inbound port answers a GET with (b"" when it closes without a byte)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"GET /items HTTP/1.1\r\nhost: catalog\r\nconnection: close\r\n\r\n")
                while chunk := tls.recv(65536):
                    received += chunk
        except (ssl.SSLError, ConnectionError):
            pass
    return received


@pytest.mark.parametrize(
    ("identity", "why"),
    [
        ("spiffe://evil.example/ns/authz/sa/frontend", "trust domain 'evil.example'"),
        ("spiffe://meshkit.local/ns/othermesh/sa/frontend", "belongs to mesh 'othermesh'"),
        ("spiffe://meshkit.local/ns/authz/sa/ghost", "names no service of mesh 'authz'"),
    ],
)
def test_a_peer_outside_the_mesh_is_refused_before_any_http_byte(
    mesh: MeshProcess, tmp_path: Path, identity: str, why: str
) -> None:
    port = mesh.instance("catalog-0")["inbound_port"]
    assert _exchange(port, _tls_client(mesh, identity, tmp_path / "bad")) == b""
    log = mesh.workdir / ".meshkit" / "logs" / "catalog-0.proxy.log"
    deadline = time.monotonic() + 30
    while not any("not of this mesh" in line and why in line for line in _lines(log)):
        assert time.monotonic() < deadline, "no refusal logged"
        time.sleep(0.2)
    # The same root, a member's identity: served (the check refuses only strangers).
    member = "spiffe://meshkit.local/ns/authz/sa/frontend"
    answer = _exchange(port, _tls_client(mesh, member, tmp_path / "good"))
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_http2_from_a_service_through_its_upstream_port(mesh: MeshProcess) -> None:
    port = mesh.instance("frontend-0")["upstream_ports"]["catalog"]
    for path, expected in (("/items", "200"), ("/items/7", "403"), ("/api/secret", "403")):
        answer = curl(
            "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
            f"http://127.0.0.1:{port}{path}",
        )  # fmt: skip
        assert answer.stdout == f"2 {expected}", (path, answer.stdout, answer.stderr)
