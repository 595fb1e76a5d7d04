"""``meshkit export kubernetes`` as a real process, on the repository's Meshfiles."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

from tests.schemas.validation import validate

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
MESHFILES = sorted({REPO / "meshfile.example.py", *REPO.glob("examples/**/[Mm]eshfile*.py")})
ROUTING = """\
from meshkit import Mesh, breaker, fault, headers, http_get, match, mirror, outlier, prefix, retry, split

mesh = Mesh("shop")
mesh.service("catalog", version="v1", run="python catalog.py", replicas=2, health=http_get("/healthz"))
mesh.service("catalog", version="v2", run="python catalog.py", health=http_get("/healthz"))
mesh.service("frontend", run="python frontend.py", upstreams=["catalog"], health=http_get("/healthz"))
mesh.route("catalog",
    match(headers={"x-canary": "1"}).to(version="v2"),
    match(headers={"x-user": prefix("beta-")}, method="GET").to(version="v2"),
    match(path="/old").redirect(path="/items", status=301),
    match(path="/ping").respond(200, "pong"),
    match(path_prefix="/api/v1/").to(version="v1", rewrite_prefix="/"),
    match(path_prefix="/slow").to(fault=fault(delay="300ms", percent=10)),
    default=split(v1=90, v2=10), timeout="2s",
    retry=retry(attempts=3, retry_on=["5xx", "connect-failure", "reset"]),
    mirror=mirror(version="v2", percent=5),
    request_headers=headers(set={"x-mesh": "1"}, remove=["x-debug"]),
    response_headers=headers(add={"x-served-by": "meshkit"}))
mesh.policy("catalog", load_balancer="least_request",
            breaker=breaker(max_requests=100), outlier=outlier(consecutive_errors=5))
mesh.gateway(port=8080, tls_port=8443, routes={"/": "frontend", "/catalog/": "catalog"})
"""


def export(meshfile: pathlib.Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "export", "kubernetes", "-f", str(meshfile), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=meshfile.parent,
    )


@pytest.mark.parametrize("meshfile", MESHFILES, ids=[str(p.relative_to(REPO)) for p in MESHFILES])
def test_every_repository_meshfile_exports_objects_that_validate(meshfile: pathlib.Path) -> None:
    first = export(meshfile)
    assert first.returncode == 0, first.stderr
    objects = [item for item in yaml.safe_load_all(first.stdout) if item]
    assert objects[0]["kind"] == "Namespace"
    for body in objects:
        validate(body)
        origin = body["metadata"]["annotations"]["meshkit.dev/origin"]
        assert origin.startswith(f"{meshfile.name}:"), origin
    again = export(meshfile)
    assert again.stdout == first.stdout
    assert again.stderr == first.stderr


def test_the_example_lists_what_does_not_carry_over_and_strict_refuses_it() -> None:
    meshfile = REPO / "meshfile.example.py"
    relaxed = export(meshfile)
    assert relaxed.returncode == 0
    assert "meshfile.example.py:10: service 'catalog-v1': run= is a local command" in (
        relaxed.stderr
    )
    strict = export(meshfile, "--strict")
    assert strict.returncode == 1
    assert strict.stdout == ""
    assert "(--strict); nothing written" in strict.stderr


def test_the_readme_routing_example_exports_and_validates(tmp_path: pathlib.Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(ROUTING, encoding="utf-8")
    images = ["--image", "catalog=shop/catalog:1", "--image", "frontend=shop/frontend:1"]
    result = export(meshfile, *images, "-o", str(tmp_path / "k8s"))
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "k8s").iterdir())
    assert len(files) == 15
    for path in files:
        (body,) = [item for item in yaml.safe_load_all(path.read_text(encoding="utf-8")) if item]
        validate(body)
    assert result.stderr.splitlines() == [
        "Meshfile.py:21: gateway: tls_port's certificate comes from meshkit's local CA; the "
        "HTTPS server reads the secret 'shop-gateway-cert', which you create (kubectl create "
        "secret tls) in the ingress gateway's namespace",
        f"wrote 15 objects to {tmp_path / 'k8s'}",
    ]
