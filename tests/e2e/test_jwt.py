"""JWT request authentication through a real mesh, with curl at the gateway.

The Meshfile names a JWKS file the test wrote from keys it generated; tokens
are signed in the test.  The gateway refuses a bad token (401, flag ``JWT``);
the called instance's inbound sidecar verifies the token again from the
``Authorization`` header it received, so its policy decides on claims that a
signature vouches for, whoever sent them.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshkit.testing.calls import read_calls
from tests.jwt_tokens import jwks, signed_token
from tests.meshproc import MeshProcess

pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parent / "apps"
ECHO = f"{sys.executable} {APPS / 'reload_echo.py'}"
ISSUER = "https://auth.example"
MESHFILE = f"""\
from meshkit import Mesh, http_get, tcp_connect

mesh = Mesh("jwt")
mesh.service("catalog", run="{ECHO}", health=http_get("/healthz", period="100ms"))
mesh.service("frontend", run="{ECHO}", health=http_get("/healthz", period="100ms"),
             upstreams=["catalog"])
mesh.service("rpc", run="{sys.executable} {APPS / "grpc_echo.py"}", protocol="grpc",
             health=tcp_connect(period="100ms"))
mesh.request_authentication(issuer="{ISSUER}", audiences=["shop"], jwks="keys/jwks.json")
mesh.allow("catalog", paths=["/public/*"])
mesh.allow("catalog", request_principals=["*"], paths=["/orders/*"])
mesh.allow("catalog", claims={{"role": "admin"}}, paths=["/admin/*"])
mesh.deny("catalog", claims={{"banned": "true"}}, name="banned")
mesh.allow("rpc", request_principals=["{ISSUER}/alice"])
mesh.gateway(port=0, routes={{"/test.Echo/": "rpc", "/": "catalog"}})
"""
RULE_LINE = 9
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(
    *, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = RSA_KEY, **claims: object
) -> str:
    body = {"iss": ISSUER, "sub": "alice", "aud": "shop", "exp": time.time() + 600, **claims}
    alg, kid = ("ES256", "ec") if isinstance(key, ec.EllipticCurvePrivateKey) else ("RS256", "rsa")
    return signed_token(body, key=key, alg=alg, kid=kid)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("jwt")
    (workdir / "keys").mkdir()
    (workdir / "keys" / "jwks.json").write_text(jwks(("rsa", RSA_KEY), ("ec", EC_KEY)))
    (workdir / "Meshfile.py").write_text(MESHFILE)
    running = MeshProcess(workdir / "Meshfile.py", workdir)
    try:
        running.wait_ready(timeout=90)
        running.wait_until(lambda s: s["gateways"] and s["gateways"][0]["sync"] == "SYNCED")
        yield running
    finally:
        running.kill_everything()


def via_gateway(mesh: MeshProcess, path: str, bearer: str | None = None) -> tuple[int, str, str]:
    """``GET path`` through the gateway with curl: status, flag, reason."""
    auth = [] if bearer is None else ["-H", f"Authorization: Bearer {bearer}"]
    answer = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "15", "-o", "/dev/null", "-D", "-",
         "-w", "%{http_code}", *auth, mesh.gateway_url() + path],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    head, _, code = answer.stdout.rpartition("\n")
    fields = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in head.splitlines()[1:])
    )
    return int(code), fields.get("x-meshkit-flag", ""), fields.get("x-meshkit-reason", "")


def test_without_a_token_the_policies_decide(mesh: MeshProcess) -> None:
    assert via_gateway(mesh, "/public/menu")[0] == 200
    status, flag, reason = via_gateway(mesh, "/orders/7")
    assert (status, flag) == (403, "RBAC"), reason


def test_a_valid_token_is_200_and_a_bad_one_401_at_the_gateway(mesh: MeshProcess) -> None:
    assert via_gateway(mesh, "/orders/7", token())[0] == 200
    assert via_gateway(mesh, "/orders/7", token(key=EC_KEY))[0] == 200
    for bad, why in (
        (token(key=STRANGER), "signature does not verify"),
        (token(exp=time.time() - 3600), "expired"),
        (token(aud="ads"), "audience 'ads'"),
        (token(iss="https://evil.example"), "issuer 'https://evil.example'"),
        ("garbage", "not a JWS"),
    ):
        status, flag, reason = via_gateway(mesh, "/public/refused", bad)
        assert (status, flag) == (401, "JWT"), (why, status, reason)
        assert why in reason
    # The gateway refused them itself: catalog's sidecar saw only the good token's call.
    assert via_gateway(mesh, "/public/seen", token())[0] == 200
    paths = [call.path for call in read_calls(mesh.status(), "catalog", run_dir=mesh.run_dir)]
    assert "/public/seen" in paths and "/public/refused" not in paths


def test_claims_allow_and_deny(mesh: MeshProcess) -> None:
    assert via_gateway(mesh, "/admin/users", token(role="admin"))[0] == 200
    status, flag, reason = via_gateway(mesh, "/admin/users", token(role="user"))
    assert (status, flag) == (403, "RBAC") and "matches no ALLOW policy" in reason
    status, flag, reason = via_gateway(mesh, "/public/menu", token(banned=True))
    assert (status, flag) == (403, "RBAC") and "denied by policy 'banned'" in reason


def test_the_inbound_sidecar_verifies_what_a_service_forwards(mesh: MeshProcess) -> None:
    """A caller inside the mesh gets no further with a forged token than a client."""
    port = mesh.instance("frontend-0")["outbound_port"]

    def from_frontend(path: str, bearer: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            connection.request(
                "GET", f"http://catalog{path}", headers={"Authorization": f"Bearer {bearer}"}
            )
            response = connection.getresponse()
            response.read()
            return response.status, response.getheader("x-meshkit-reason") or ""
        finally:
            connection.close()

    assert from_frontend("/admin/users", token(role="admin"))[0] == 200
    status, reason = from_frontend("/admin/users", token(key=STRANGER, role="admin"))
    assert status == 401 and f"Meshfile.py:{RULE_LINE}" in reason, reason


def test_grpc_callers_get_unauthenticated_and_permission_denied(mesh: MeshProcess) -> None:
    def say(bearer: str | None) -> bytes:
        with grpc.insecure_channel(mesh.gateway_url().removeprefix("http://")) as channel:
            call = channel.unary_unary(
                "/test.Echo/Say", request_serializer=_same, response_deserializer=_same
            )
            metadata = None if bearer is None else [("authorization", f"Bearer {bearer}")]
            answer: bytes = call(b"hi", timeout=15, metadata=metadata)
            return answer

    assert say(token()) == b"echo:hi"
    for bearer, code in (
        (token(key=STRANGER), grpc.StatusCode.UNAUTHENTICATED),
        (token(sub="mallory"), grpc.StatusCode.PERMISSION_DENIED),
        (None, grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            say(bearer)
        assert raised.value.code() == code, raised.value.details()


def _same(data: bytes) -> bytes:
    return data


def test_a_key_added_to_the_jwks_file_is_accepted_after_the_reload(mesh: MeshProcess) -> None:
    """Rotation: the watcher reloads the mesh when the JWKS file changes (old keys stay valid)."""
    newcomer = ec.generate_private_key(ec.SECP256R1())
    fresh = signed_token(
        {"iss": ISSUER, "sub": "alice", "aud": "shop", "exp": time.time() + 600},
        key=newcomer, alg="ES256", kid="new",
    )  # fmt: skip
    assert via_gateway(mesh, "/public/menu", fresh)[:2] == (401, "JWT")
    keys = jwks(("rsa", RSA_KEY), ("ec", EC_KEY), ("new", newcomer))
    (mesh.workdir / "keys" / "jwks.json").write_text(keys)
    deadline = time.monotonic() + 60
    while via_gateway(mesh, "/public/menu", fresh)[0] != 200:
        assert time.monotonic() < deadline, "the new key was never accepted"
        time.sleep(0.3)
    assert via_gateway(mesh, "/orders/7", token())[0] == 200
