"""The certificate lifecycle without processes: the bootstrap pipe, the control API's
certificate endpoint, compile's identities, the status fields, and a sidecar's
``SidecarIdentity`` talking to a real ``ControlServer`` over a Unix socket."""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import pytest
import trio
from cryptography import x509

from meshkit.api.control import ControlClient
from meshkit.ca import (
    EXPIRY_GRACE,
    Issuer,
    RenewalSchedule,
    RootCA,
    generate_key,
    make_csr,
    spiffe_id,
)
from meshkit.ca.errors import CsrRefused
from meshkit.ca.exchange import BOOTSTRAP_FD_ENV, bootstrap_request_body
from meshkit.ca.workload import make_serving_csr, renewal_proof
from meshkit.dsl.spec import GatewayRoute, GatewaySpec, MeshSpec, ServiceSpec
from meshkit.proxy.identity import IdentityError, SidecarIdentity, read_bootstrap_token
from meshkit.registry.compile import compile_configs
from meshkit.registry.server.api import BadRequest, ControlServer
from meshkit.registry.state import InstanceRecord, Registry
from meshkit.registry.status import status_document
from meshkit.runtime.supervisor import bootstrap_pipe

FRONTEND = spiffe_id("shop", "frontend")
CATALOG = spiffe_id("shop", "catalog")
GATEWAY = spiffe_id("shop", "gateway")
SPEC = MeshSpec(
    name="shop",
    file="Meshfile.py",
    services=(
        ServiceSpec(name="frontend", command="x", upstreams=("catalog",)),
        ServiceSpec(name="catalog", command="x"),
    ),
    gateway=GatewaySpec(port=0, tls_port=0, routes=(GatewayRoute(prefix="/", service="frontend"),)),
    mtls="permissive",
    cert_lifetime=60.0,
)


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return Issuer(root=RootCA.load_or_create(tmp_path / "ca", mesh="shop"))


def make_registry() -> Registry:
    registry = Registry(mesh="shop")
    registry.add(InstanceRecord(id="frontend-0", service="frontend", port=9001))
    registry.add(InstanceRecord(id="catalog-0", service="catalog", port=9002))
    registry.add(InstanceRecord(id="gateway", service="gateway", kind="gateway"))
    return registry


def make_server(issuer: Issuer) -> tuple[Registry, ControlServer, list[str]]:
    registry = make_registry()
    said: list[str] = []
    server = ControlServer(
        registry,
        meshfile="Meshfile.py",
        on_down=lambda: None,
        issuer=issuer,
        cert_lifetime=60.0,
        announce=said.append,
    )
    return registry, server, said


def test_the_bootstrap_pipe_gives_the_token_once_and_is_closed() -> None:
    descriptor = bootstrap_pipe("s3cret-token")
    environ = {BOOTSTRAP_FD_ENV: str(descriptor)}
    assert read_bootstrap_token(environ) == "s3cret-token"
    assert BOOTSTRAP_FD_ENV not in environ
    with pytest.raises(OSError):
        os.fstat(descriptor)
    assert read_bootstrap_token({}) is None
    with pytest.raises(IdentityError, match="not a file descriptor"):
        read_bootstrap_token({BOOTSTRAP_FD_ENV: "three"})


def test_compile_names_identities_mtls_and_the_https_listener() -> None:
    registry = make_registry()
    registry.mark_sidecar_ready("catalog-0", pid=1, ports={"inbound": 7001})
    registry.transition("catalog-0", "starting")
    registry.transition("catalog-0", "healthy")
    configs = compile_configs(SPEC, registry)
    frontend = configs["frontend-0"]
    assert (frontend.identity, frontend.mtls) == (FRONTEND, "permissive")
    catalog_cluster = frontend.cluster("catalog")
    assert catalog_cluster is not None
    assert [endpoint.identity for endpoint in catalog_cluster.endpoints] == [CATALOG]
    gateway = configs["gateway"]
    assert gateway.identity == GATEWAY
    assert [(lst.name, lst.tls) for lst in gateway.listeners] == [
        ("gateway", False),
        ("gateway-tls", True),
        ("admin", False),
    ]


async def test_the_certificate_endpoint_issues_records_and_refuses(issuer: Issuer) -> None:
    registry, server, said = make_server(issuer)
    key = generate_key()
    token = issuer.tokens.issue(CATALOG, ttl=60)
    body = bootstrap_request_body(make_csr(key, CATALOG), token)
    reply = await server.dispatch("POST", "/v1/instances/catalog-0/certificate", _json(body))
    assert reply.status == 200
    issued = x509.load_pem_x509_certificate(reply.body["certificate"].encode())
    assert registry.get("catalog-0").cert_not_after == issued.not_valid_after_utc.timestamp()
    status = status_document(registry, file="Meshfile.py")
    catalog = status["services"][1]["instances"][0]
    assert catalog["cert_state"] == "valid" and status["errors"] == []

    reused = await server.dispatch("POST", "/v1/instances/catalog-0/certificate", _json(body))
    assert reused.status == 403 and "already used" in reused.body["error"]
    foreign = bootstrap_request_body(make_csr(key, FRONTEND), issuer.tokens.issue(FRONTEND, ttl=60))
    refused = await server.dispatch("POST", "/v1/instances/catalog-0/certificate", _json(foreign))
    assert refused.status == 403
    assert f"catalog-0 may only have a certificate for {CATALOG}" in refused.body["error"]
    assert any("refused a certificate for catalog-0" in line for line in said)
    registry.transition("catalog-0", "starting")
    status = status_document(registry, file="Meshfile.py")
    assert status["services"][1]["instances"][0]["cert_state"].startswith("refused: ")
    assert any(error.startswith("catalog-0: certificate refused") for error in status["errors"])

    registry.record_certificate("catalog-0", not_after=100.0)
    expired = status_document(registry, file="Meshfile.py", now=200.0)
    assert expired["services"][1]["instances"][0]["cert_state"] == "expired"
    assert "catalog-0: its certificate expired and was not renewed" in expired["errors"]

    with pytest.raises(BadRequest, match="'csr'") as malformed:
        await server.dispatch("POST", "/v1/instances/catalog-0/certificate", b"{}")
    assert malformed.value.status == 400


def test_only_the_gateway_gets_an_https_certificate_for_allowed_hosts(issuer: Issuer) -> None:
    def svid(identity: str) -> tuple[bytes, object]:
        key = generate_key()
        return issuer.sign_csr(make_csr(key, identity), issuer.tokens.issue(identity, ttl=60)), key

    gateway_cert, gateway_key = svid(GATEWAY)
    serving_key = generate_key()
    csr = make_serving_csr(serving_key, ("localhost", "127.0.0.1"))
    proof = renewal_proof(gateway_key, csr)  # type: ignore[arg-type]
    cert = x509.load_pem_x509_certificate(
        issuer.sign_gateway_csr(csr, gateway_cert, proof, gateway_identity=GATEWAY)
    )
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    other_cert, other_key = svid(FRONTEND)
    with pytest.raises(CsrRefused, match="only the gateway"):
        issuer.sign_gateway_csr(
            csr,
            other_cert,
            renewal_proof(other_key, csr),
            gateway_identity=GATEWAY,  # type: ignore[arg-type]
        )
    evil = make_serving_csr(serving_key, ("localhost", "bank.example"))
    with pytest.raises(CsrRefused, match=r"bank\.example"):
        issuer.sign_gateway_csr(
            evil,
            gateway_cert,
            renewal_proof(gateway_key, evil),
            gateway_identity=GATEWAY,  # type: ignore[arg-type]
        )


async def test_a_sidecar_identity_bootstraps_renews_and_gets_the_gateway_certificate(
    issuer: Issuer, tmp_path: Path
) -> None:
    registry, server, _ = make_server(issuer)
    socket_path = tmp_path / "control.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, socket_path)
        gateway = SidecarIdentity(
            spiffe_id=GATEWAY, control=ControlClient(socket_path=socket_path, instance="gateway")
        )
        await gateway.bootstrap(issuer.tokens.issue(GATEWAY, ttl=60))
        first = gateway.contexts
        assert first is not None and first.identity == GATEWAY and gateway.state == "ok"
        https = await gateway.gateway_https_context()
        renewed = await gateway.renew_once()
        assert renewed is gateway.contexts and renewed is not first
        assert await gateway.gateway_https_context() is https
        assert registry.get("gateway").cert_not_after is not None

        impostor = SidecarIdentity(
            spiffe_id=CATALOG, control=ControlClient(socket_path=socket_path, instance="gateway")
        )
        with pytest.raises(IdentityError, match="refused"):
            await impostor.bootstrap(issuer.tokens.issue(CATALOG, ttl=60))
        nursery.cancel_scope.cancel()


async def test_renewal_outlives_a_stopped_control_plane_and_renews_when_it_answers(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    offset = time.time() - trio.current_time()

    def wall_clock() -> float:  # wall time, advanced by the autojump clock
        return offset + trio.current_time()

    issuer = Issuer(root=RootCA.load_or_create(tmp_path / "ca", mesh="shop"), clock=wall_clock)
    _, server, _ = make_server(issuer)
    socket_path = tmp_path / "control.sock"
    given_up: list[bool] = []
    renewed: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, socket_path)
        reachable = ControlClient(socket_path=socket_path, instance="catalog-0")
        identity = SidecarIdentity(
            spiffe_id=CATALOG,
            control=reachable,
            clock=wall_clock,
            schedule=RenewalSchedule(clock=wall_clock),
        )
        await identity.bootstrap(issuer.tokens.issue(CATALOG, ttl=60))
        assert identity.contexts is not None
        not_after = identity.contexts.not_after.timestamp()
        # The control plane goes away: renewals fail, past expiry too.
        identity.control = ControlClient(socket_path=tmp_path / "gone.sock", instance="catalog-0")
        nursery.start_soon(
            functools.partial(
                identity.renew_forever,
                on_renewed=lambda contexts: renewed.append(wall_clock()),
                on_unrenewable=lambda: given_up.append(True),
            )
        )
        await trio.sleep_until(trio.current_time() + (not_after - wall_clock()) + 120)
        assert identity.state.startswith("expired, renewing: ")
        assert renewed == [] and given_up == []
        back = wall_clock()
        identity.control = reachable  # it answers again, 120 s after the certificate expired
        while not renewed:
            await trio.sleep(0.1)
        assert renewed[0] - back <= 60 * 0.25  # within one capped retry
        assert identity.state == "ok" and given_up == []
        assert identity.contexts.not_after.timestamp() > wall_clock()
        nursery.cancel_scope.cancel()


async def test_a_refused_renewal_after_expiry_asks_for_a_fresh_bootstrap(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Past the grace the issuer refuses: the sidecar gives up (its owner restarts it)."""
    offset = time.time() - trio.current_time()

    def wall_clock() -> float:
        return offset + trio.current_time()

    issuer = Issuer(root=RootCA.load_or_create(tmp_path / "ca", mesh="shop"), clock=wall_clock)
    _, server, _ = make_server(issuer)
    socket_path = tmp_path / "control.sock"
    given_up: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, socket_path)
        reachable = ControlClient(socket_path=socket_path, instance="catalog-0")
        identity = SidecarIdentity(
            spiffe_id=CATALOG,
            control=reachable,
            clock=wall_clock,
            schedule=RenewalSchedule(clock=wall_clock),
        )
        await identity.bootstrap(issuer.tokens.issue(CATALOG, ttl=60))
        identity.control = ControlClient(socket_path=tmp_path / "gone.sock", instance="catalog-0")
        nursery.start_soon(
            functools.partial(
                identity.renew_forever,
                on_renewed=lambda contexts: None,
                on_unrenewable=lambda: given_up.append(wall_clock()),
            )
        )
        await trio.sleep(60 + EXPIRY_GRACE + 10)
        identity.control = reachable
        while not given_up:
            await trio.sleep(1)
        assert identity.state == "expired"
        nursery.cancel_scope.cancel()


def _json(body: dict[str, str]) -> bytes:
    return json.dumps(body).encode()
