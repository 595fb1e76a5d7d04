"""The Kubernetes objects of an export, and the findings for what does not carry over."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from meshkit.dsl import evaluate_in_process
from meshkit.export import ExportOptions
from tests.schemas.validation import export_validated

REPO = pathlib.Path(__file__).resolve().parents[2]

SHOP = """\
from meshkit import Mesh, http_get, restart_policy, tcp_connect

mesh = Mesh("shop")
mesh.service("catalog", version="v1", run="python catalog.py", replicas=2,
             health=http_get("/healthz", period="2s", timeout="1s", initial_delay="3s",
                         failure_threshold=5),
             image="shop/catalog:1.4")
mesh.service("catalog", version="v2", run="python catalog.py", image="shop/catalog:2.0",
             env={"CATALOG_FLAVOUR": "new", "PORT": "9000"})
mesh.service("rpc", run="python rpc.py", protocol="grpc", health=tcp_connect(), image="shop/rpc:1")
mesh.service("frontend", run="python frontend.py", upstreams=["catalog", "rpc"],
             health=http_get("/healthz"))
"""


def export_text(tmp_path: pathlib.Path, text: str, **options: Any) -> Any:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(text, encoding="utf-8")
    return export_validated(meshfile, ExportOptions(base=str(tmp_path), **options))


def bodies(exported: Any, kind: str) -> dict[str, dict[str, Any]]:
    return {m.name: m.body for m in exported.manifests if m.kind == kind}


def container(exported: Any, name: str) -> dict[str, Any]:
    deployment = bodies(exported, "Deployment")[name]
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_objects_come_kind_by_kind_in_declaration_order(tmp_path: pathlib.Path) -> None:
    exported = export_text(tmp_path, SHOP)
    assert [(m.kind, m.name) for m in exported.manifests] == [
        ("Namespace", "shop"),
        ("ServiceAccount", "catalog"),
        ("ServiceAccount", "rpc"),
        ("ServiceAccount", "frontend"),
        ("Service", "catalog"),
        ("Service", "rpc"),
        ("Service", "frontend"),
        ("Deployment", "catalog-v1"),
        ("Deployment", "catalog-v2"),
        ("Deployment", "rpc"),
        ("Deployment", "frontend"),
        ("PeerAuthentication", "default"),
        ("DestinationRule", "catalog"),
        ("DestinationRule", "rpc"),
        ("DestinationRule", "frontend"),
        ("VirtualService", "catalog"),
        ("VirtualService", "rpc"),
        ("VirtualService", "frontend"),
    ]


def test_namespace_is_labelled_for_sidecar_injection(tmp_path: pathlib.Path) -> None:
    exported = export_text(tmp_path, SHOP)
    namespace = bodies(exported, "Namespace")["shop"]
    assert namespace["metadata"]["labels"] == {"istio-injection": "enabled"}
    assert namespace["metadata"]["annotations"] == {"meshkit.dev/origin": "Meshfile.py:3"}
    renamed = export_text(tmp_path, SHOP, namespace="staging")
    assert list(bodies(renamed, "Namespace")) == ["staging"]
    assert {m.body["metadata"].get("namespace") for m in renamed.manifests} == {None, "staging"}


def test_each_service_has_its_own_service_account(tmp_path: pathlib.Path) -> None:
    exported = export_text(tmp_path, SHOP)
    assert list(bodies(exported, "ServiceAccount")) == ["catalog", "rpc", "frontend"]
    for name, deployment in bodies(exported, "Deployment").items():
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert name.startswith(account)


def test_deployment_per_version_with_labels_replicas_and_grace(tmp_path: pathlib.Path) -> None:
    exported = export_text(tmp_path, SHOP, grace=25)
    v1 = bodies(exported, "Deployment")["catalog-v1"]
    assert v1["metadata"]["labels"] == {"app": "catalog", "version": "v1"}
    assert v1["metadata"]["annotations"] == {"meshkit.dev/origin": "Meshfile.py:4"}
    assert v1["spec"]["replicas"] == 2
    assert v1["spec"]["selector"] == {"matchLabels": {"app": "catalog", "version": "v1"}}
    template = v1["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "catalog", "version": "v1"}
    assert template["metadata"]["annotations"] == {
        "proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'
    }
    assert template["spec"]["terminationGracePeriodSeconds"] == 25
    unversioned = bodies(exported, "Deployment")["rpc"]
    assert unversioned["metadata"]["labels"] == {"app": "rpc"}


def test_container_image_port_and_environment(tmp_path: pathlib.Path) -> None:
    exported = export_text(tmp_path, SHOP)
    v1 = container(exported, "catalog-v1")
    assert v1["image"] == "shop/catalog:1.4"
    assert "command" not in v1
    assert v1["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert v1["env"] == [
        {"name": "PORT", "value": "8080"},
        {"name": "MESHKIT_SERVICE", "value": "catalog"},
        {"name": "MESHKIT_VERSION", "value": "v1"},
        {"name": "MESHKIT_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    v2 = container(exported, "catalog-v2")
    assert v2["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert {"name": "PORT", "value": "9000"} in v2["env"]
    assert {"name": "CATALOG_FLAVOUR", "value": "new"} in v2["env"]
    assert [item["name"] for item in v2["env"]].count("PORT") == 1
    frontend = container(exported, "frontend")
    assert frontend["env"][-4:] == [
        {"name": "CATALOG_URL", "value": "http://catalog"},
        {"name": "CATALOG_ADDR", "value": "catalog:80"},
        {"name": "RPC_URL", "value": "http://rpc"},
        {"name": "RPC_ADDR", "value": "rpc:80"},
    ]


def test_images_from_the_command_line_win(tmp_path: pathlib.Path) -> None:
    images = {"catalog": "registry.local/catalog:9", "catalog-v2": "registry.local/canary:1"}
    exported = export_text(tmp_path, SHOP, images=images)
    assert container(exported, "catalog-v1")["image"] == "registry.local/catalog:9"
    assert container(exported, "catalog-v2")["image"] == "registry.local/canary:1"


def test_probes_from_the_health_checks(tmp_path: pathlib.Path) -> None:
    exported = export_text(tmp_path, SHOP)
    v1 = container(exported, "catalog-v1")
    assert v1["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "initialDelaySeconds": 3,
        "successThreshold": 1,
        "failureThreshold": 5,
    }
    assert v1["livenessProbe"] == v1["readinessProbe"]
    rpc = container(exported, "rpc")
    assert rpc["readinessProbe"]["tcpSocket"] == {"port": "grpc"}
    # meshkit checks a service without a health check by a TCP connect.
    no_check = container(exported, "catalog-v2")
    assert no_check["readinessProbe"]["tcpSocket"] == {"port": "http"}


def test_service_names_its_port_for_the_protocol(tmp_path: pathlib.Path) -> None:
    exported = export_text(tmp_path, SHOP)
    services = bodies(exported, "Service")
    assert services["catalog"]["spec"] == {
        "selector": {"app": "catalog"},
        "ports": [
            {
                "name": "http",
                "port": 80,
                "targetPort": "http",
                "protocol": "TCP",
                "appProtocol": "http",
            }
        ],
    }
    assert services["rpc"]["spec"]["ports"][0]["name"] == "grpc"
    assert services["rpc"]["spec"]["ports"][0]["appProtocol"] == "grpc"
    assert container(exported, "rpc")["ports"][0]["name"] == "grpc"


FINDINGS = [
    (
        "a run command without an image",
        'mesh.service("api", run="python api.py")',
        6,
        "service 'api': run= is a local command and no image is given; image 'api:latest'",
    ),
    (
        "watch paths",
        'mesh.service("api", run="a", image="i", watch=["api.py"])',
        6,
        "service 'api': watch= restarts on a local file change; dropped",
    ),
    (
        "start-up order",
        'mesh.service("api", run="a", image="i", depends_on=["db"])',
        6,
        "service 'api': depends_on=['db'] orders start-up; dropped",
    ),
    (
        "a restart mode",
        'mesh.service("api", run="a", image="i", restart_policy="on_failure")',
        6,
        "service 'api': restart mode 'on_failure'; a Deployment always restarts its pods",
    ),
    (
        "restart back-off",
        'mesh.service("api", run="a", image="i", restart_policy=restart_policy(backoff="1s"))',
        6,
        "service 'api': restart back-off settings; dropped",
    ),
    (
        "a probe period under a second",
        'mesh.service("api", run="a", image="i", health=http_get("/", period="500ms"))',
        6,
        "service 'api' health check: periodSeconds must be whole seconds (at least 1), not 0.5",
    ),
    (
        "PORT that is not a number",
        'mesh.service("api", run="a", image="i", env={"PORT": "http"})',
        6,
        "service 'api': env PORT='http' is not a port number; the container port is 8080",
    ),
    (
        "the gateway's TLS certificate",
        'mesh.gateway(port=8080, tls_port=8443, routes={"/": "db"})',
        6,
        "gateway: tls_port's certificate comes from meshkit's local CA",
    ),
    (
        "a retry back-off cap Istio cannot set",
        'mesh.route("db", retry=retry(attempts=2, max_backoff="1s"))',
        6,
        "route 'db': max_backoff=1s has no Istio field; Envoy caps back-off at 10 x backoff",
    ),
    (
        "a retry condition Istio does not know",
        'mesh.route("db", retry=retry(attempts=2, retry_on=["5xx", "not-found"]))',
        6,
        "route 'db': retry_on 'not-found' is not a condition Istio retries on; dropped",
    ),
    (
        "a maximum ejection time",
        'mesh.policy("db", outlier=outlier(max_ejection="60s"))',
        6,
        "policy 'db': max_ejection=1m has no Istio field; Envoy's cap of 300s applies",
    ),
    (
        "a rate-based retry budget",
        'mesh.policy("db", retry_budget=retry_budget(percent=10, window="5s"))',
        6,
        "policy 'db': Istio's retryBudget limits concurrent retries, not retries per 5s window",
    ),
    (
        "a header added twice",
        'mesh.route("db", request_headers=headers(add={"x-a": "1", "X-A": "2"}))',
        6,
        "route 'db': request headers add= the same header twice",
    ),
]


@pytest.mark.parametrize(
    ("snippet", "line", "text"), [case[1:] for case in FINDINGS], ids=[c[0] for c in FINDINGS]
)
def test_what_does_not_carry_over_is_a_finding_at_its_line(
    tmp_path: pathlib.Path, snippet: str, line: int, text: str
) -> None:
    header = 'from meshkit import *\n\nmesh = Mesh("shop")\nmesh.service("db", run="d", image="db:1")\n\n'
    exported = export_text(tmp_path, header + snippet + "\n")
    located = [finding.located(str(tmp_path)) for finding in exported.findings]
    matching = [entry for entry in located if text in entry]
    assert len(matching) == 1, located
    assert matching[0].startswith(f"Meshfile.py:{line}: "), located


def test_a_certificate_lifetime_is_a_finding_at_the_mesh(tmp_path: pathlib.Path) -> None:
    exported = export_text(
        tmp_path, 'from meshkit import *\nmesh = Mesh("shop", cert_lifetime="1h")\n'
    )
    assert [finding.located(str(tmp_path)) for finding in exported.findings] == [
        "Meshfile.py:2: Mesh('shop'): cert_lifetime=1h has no namespace-level Istio field; "
        "dropped: istiod's workload certificate lifetime (24h) applies"
    ]


def test_a_clean_meshfile_has_no_findings(tmp_path: pathlib.Path) -> None:
    exported = export_text(
        tmp_path, SHOP.replace('run="python frontend.py",', 'run="f", image="f",')
    )
    assert exported.findings == ()


def test_the_example_shop_exports_and_validates() -> None:
    exported = export_validated(REPO / "meshfile.example.py")
    kinds = [m.kind for m in exported.manifests]
    assert kinds.count("Deployment") == 4
    assert kinds[-2:] == ["Gateway", "VirtualService"]


def test_an_image_that_is_not_a_string_is_a_problem_at_its_line(tmp_path: pathlib.Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(
        'from meshkit import Mesh\nmesh = Mesh("shop")\nmesh.service("api", run="a", image=3)\n'
    )
    problems = [str(problem) for problem in evaluate_in_process(meshfile).problems]
    assert problems == [f"{meshfile}:3: service 'api': image must be a string, got 3 (a int)"]
