"""Identity and mTLS end to end: ``meshkit up`` with real sidecars, openssl, curl.

The mesh: gateway (HTTP and HTTPS) -> front -> back, both apps ``apps/identity_echo.py``,
certificates living 4 s so that they rotate several times during the module.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshkit.api.control import ControlPlaneError, request_json
from meshkit.ca import Issuer, RootCA, generate_key, make_csr, spiffe_id
from meshkit.ca.exchange import bootstrap_request_body, renewal_request_body
from meshkit.ca.workload import private_key_pem, renewal_proof
from meshkit.dsl.spec import GatewayRoute, GatewaySpec, HealthCheck, MeshSpec, ServiceSpec
from meshkit.runtime.mesh import UpOptions, run_mesh
from tests.meshproc import MeshProcess, running_mesh

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent / "apps" / "identity_echo.py"
FRONT = spiffe_id("idshop", "front")
BACK = spiffe_id("idshop", "back")
GATEWAY = spiffe_id("idshop", "gateway")
REQUEST = b"GET /whoami HTTP/1.1\r\nHost: back\r\nConnection: close\r\n\r\n"


def write_meshfile(directory: Path, *, mtls: str = "strict", lifetime: str = "4s") -> Path:
    meshfile = directory / "Meshfile.py"
    run = f"python {APP}"
    meshfile.write_text(
        "from meshkit import Mesh, http_get\n"
        f"mesh = Mesh('idshop', mtls={mtls!r}, cert_lifetime={lifetime!r})\n"
        f"mesh.service('back', run={run!r}, health=http_get('/healthz'))\n"
        f"mesh.service('front', run={run!r}, health=http_get('/healthz'), upstreams=['back'])\n"
        "mesh.gateway(port=0, tls_port=0, routes={'/': 'front'})\n"
    )
    return meshfile


@pytest.fixture(scope="module")
def secure_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("idshop")
    with running_mesh(workdir, write_meshfile(workdir)) as mesh:
        yield mesh


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def s_client(port: int, *options: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", *options],
        input=REQUEST,
        capture_output=True,
        timeout=15,
        check=False,
    )


def client_certificate(root_dir: Path, identity: str, out: Path) -> tuple[Path, Path]:
    """A certificate for ``identity`` signed by the root in ``root_dir``; (cert, key) files."""
    issuer = Issuer(root=RootCA.load(root_dir))
    key = generate_key()
    cert = issuer.sign_csr(make_csr(key, identity), issuer.tokens.issue(identity, ttl=60))
    out.mkdir(exist_ok=True)
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    cert_path.write_bytes(cert)
    key_path.write_bytes(private_key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_the_app_sees_its_callers_identity_in_xfcc(secure_mesh: MeshProcess) -> None:
    result = curl(
        "-H", "x-forwarded-client-cert: By=x;URI=spiffe://meshkit.local/ns/idshop/sa/admin",
        secure_mesh.gateway_url() + "/via/back/whoami",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["service"] == "front"
    assert answer["xfcc"] == [f"By={FRONT};URI={GATEWAY}"]
    assert answer["upstream"]["service"] == "back"
    assert answer["upstream"]["xfcc"] == [f"By={BACK};URI={FRONT}"]


def test_status_reports_certificates_and_the_https_gateway(secure_mesh: MeshProcess) -> None:
    status = secure_mesh.status()
    assert status["gateways"][0]["tls_url"].startswith("https://localhost:")
    now = time.time()
    for service in status["services"]:
        for instance in service["instances"]:
            assert instance["cert_state"] == "valid"
            assert now < instance["cert_expires_at"] <= now + 5
    key_file = secure_mesh.workdir / ".meshkit" / "ca" / "root-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert secure_mesh.control_socket.stat().st_mode & 0o777 == 0o600


def test_openssl_against_a_strict_inbound_port(secure_mesh: MeshProcess, tmp_path: Path) -> None:
    port = secure_mesh.instance("back-0")["inbound_port"]
    root_dir = secure_mesh.workdir / ".meshkit" / "ca"

    anonymous = s_client(port, "-tls1_3")
    assert b"HTTP/1.1" not in anonymous.stdout

    other_root = tmp_path / "other-ca"
    RootCA.load_or_create(other_root, mesh="idshop")
    cert, key = client_certificate(other_root, FRONT, tmp_path / "foreign")
    foreign = s_client(port, "-cert", str(cert), "-key", str(key))
    assert b"HTTP/1.1" not in foreign.stdout

    old = s_client(port, "-tls1_2")
    assert old.returncode != 0 and b"HTTP/1.1" not in old.stdout

    cert, key = client_certificate(root_dir, FRONT, tmp_path / "mesh")
    good = s_client(port, "-cert", str(cert), "-key", str(key), "-CAfile", str(root_dir / "root.pem"))
    assert b"Verify return code: 0 (ok)" in good.stdout, good.stdout + good.stderr
    assert b"HTTP/1.1 200 OK" in good.stdout
    served = x509.load_pem_x509_certificate(good.stdout)
    uris = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [BACK]
    body = good.stdout.rsplit(b"\r\n\r\n", 1)[1]
    answer, _ = json.JSONDecoder().raw_decode(body.decode())  # s_client says "closed" after it
    assert answer["xfcc"] == [f"By={BACK};URI={FRONT}"]


def test_plain_curl_to_a_strict_inbound_port_gets_nothing(secure_mesh: MeshProcess) -> None:
    port = secure_mesh.instance("back-0")["inbound_port"]
    result = curl(f"http://127.0.0.1:{port}/whoami")
    assert result.returncode != 0 and result.stdout == ""


def test_curl_trusts_the_https_gateway_with_the_exported_root(secure_mesh: MeshProcess) -> None:
    export = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "ca", "--export", "root.pem"],
        cwd=secure_mesh.workdir, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    tls_url = secure_mesh.status()["gateways"][0]["tls_url"]
    result = curl("--cacert", str(secure_mesh.workdir / "root.pem"), tls_url + "/whoami")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["xfcc"] == [f"By={FRONT};URI={GATEWAY}"]
    untrusted = curl(tls_url + "/whoami")
    assert untrusted.returncode == 60  # curl: the peer's certificate is not trusted


def test_certificates_rotate_under_traffic_without_a_failure(secure_mesh: MeshProcess) -> None:
    before = {i["id"]: i["cert_expires_at"] for s in secure_mesh.status()["services"] for i in s["instances"]}
    port = int(secure_mesh.gateway_url().rsplit(":", 1)[1])
    failures: list[str] = []
    done = 0
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fresh = done % 2 == 0  # every other request on a new connection (a new handshake)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10) if fresh else kept
        try:
            connection.request("GET", "/via/back/whoami")
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                failures.append(f"{response.status}: {body[:200]!r}")
        except (OSError, http.client.HTTPException) as error:
            failures.append(repr(error))
        finally:
            if fresh:
                connection.close()
        done += 1
    kept.close()
    assert failures == [] and done > 50
    after = {i["id"]: i["cert_expires_at"] for s in secure_mesh.status()["services"] for i in s["instances"]}
    assert all(after[name] > before[name] + 4 for name in before)  # renewed at least twice
    log = (secure_mesh.workdir / ".meshkit" / "logs" / "back-0.proxy.log").read_text()
    assert log.count("renewed certificate") >= 3


def test_permissive_mode_accepts_plaintext_on_inbound_ports(tmp_path: Path) -> None:
    mesh = MeshProcess(write_meshfile(tmp_path, mtls="permissive", lifetime="1h"), tmp_path)
    try:
        mesh.wait_ready(timeout=60)
        port = mesh.instance("back-0")["inbound_port"]
        plain = curl(f"http://127.0.0.1:{port}/whoami")
        assert plain.returncode == 0, plain.stderr
        assert json.loads(plain.stdout)["xfcc"] == []  # no TLS, no identity
        through = json.loads(curl(mesh.gateway_url() + "/via/back/whoami").stdout)
        assert through["upstream"]["xfcc"] == [f"By={BACK};URI={FRONT}"]  # still mTLS
    finally:
        mesh.kill_everything()


# A sidecar wrapper that leaks its bootstrap token to a file before running the
# real sidecar with it: the test then tries to use the token a second time.
LEAKING_SIDECAR = """
import os, sys
fd = int(os.environ["MESHKIT_BOOTSTRAP_FD"])
token = os.read(fd, 4096)
os.close(fd)
instance = sys.argv[sys.argv.index("--instance") + 1]
with open(os.path.join(os.environ["MESHKIT_TEST_LEAK_DIR"], instance), "wb") as leak:
    leak.write(token)
read_end, write_end = os.pipe()
os.write(write_end, token)
os.close(write_end)
os.set_inheritable(read_end, True)
os.environ["MESHKIT_BOOTSTRAP_FD"] = str(read_end)
os.execv(sys.executable, [sys.executable, "-m", "meshkit.proxy", *sys.argv[1:]])
"""


async def certificate_request(socket: Path, instance: str, body: dict[str, str]) -> tuple[int, Any]:
    return await request_json(socket, "POST", f"/v1/instances/{instance}/certificate", body)


async def test_the_control_plane_refuses_foreign_csrs_and_reused_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaks = tmp_path / "leaks"
    leaks.mkdir()
    monkeypatch.setenv("MESHKIT_TEST_LEAK_DIR", str(leaks))
    wrapper = tmp_path / "leaking_sidecar.py"
    wrapper.write_text(LEAKING_SIDECAR)
    spec = MeshSpec(
        name="idshop",
        file="Meshfile.py",
        services=(
            ServiceSpec(name="back", command=f"{sys.executable} {APP}", health=HealthCheck(period=0.2)),
        ),
        gateway=GatewaySpec(port=0, routes=(GatewayRoute(prefix="/", service="back"),)),
    )
    options = UpOptions(
        state_dir=tmp_path / ".meshkit",
        base_dir=tmp_path,
        meshfile=str(tmp_path / "Meshfile.py"),
        grace=2.0,
        handle_signals=False,
        sidecar_argv=(sys.executable, str(wrapper)),
    )
    socket = options.state_dir / "run" / "control.sock"
    results: list[int] = []

    async def up() -> None:
        results.append(await run_mesh(spec, options))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(up)
        with trio.fail_after(30):
            while True:
                try:
                    code, status = await request_json(socket, "GET", "/v1/status")
                    if code == 200 and status["ready"]:
                        break
                except ControlPlaneError:
                    pass
                await trio.sleep(0.1)
        token = (leaks / "back-0").read_text()
        key = generate_key()

        code, body = await certificate_request(
            socket, "back-0", bootstrap_request_body(make_csr(key, BACK), token)
        )
        assert code == 403 and "already used" in body["error"]

        code, body = await certificate_request(
            socket, "back-0", bootstrap_request_body(make_csr(key, FRONT), "made-up")
        )
        assert code == 403 and f"may only have a certificate for {BACK}" in body["error"]

        gateway_token = (leaks / "gateway").read_text()
        code, body = await certificate_request(
            socket, "gateway", bootstrap_request_body(make_csr(key, BACK), gateway_token)
        )
        assert code == 403 and f"for {GATEWAY}" in body["error"]

        # A certificate of the mesh for one service cannot renew into another.
        cert, key_file = client_certificate(options.state_dir / "ca", FRONT, tmp_path / "front")
        front_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(front_key, ec.EllipticCurvePrivateKey)
        csr = make_csr(key, BACK)
        code, body = await certificate_request(
            socket,
            "back-0",
            renewal_request_body(csr, cert.read_bytes(), renewal_proof(front_key, csr)),
        )
        assert code == 403 and f"the presented certificate is {FRONT}" in body["error"]

        code, status = await request_json(socket, "GET", "/v1/status")
        assert any("back-0: certificate refused" in error for error in status["errors"])
        code, _ = await request_json(socket, "POST", "/v1/down")
        assert code == 202
    assert results == [0]
