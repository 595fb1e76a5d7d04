"""``meshkit export kubernetes`` in-process: output, findings, ``--strict``, ``-o DIR``."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from meshkit.cli import main
from tests.schemas.validation import validate

MESHFILE = (
    "from meshkit import Mesh, http_get\n"
    "mesh = Mesh('shop')\n"
    "mesh.service('catalog', version='v1', run='c', image='shop/catalog:1', health=http_get('/h'))\n"
    "mesh.service('catalog', version='v2', run='c', image='shop/catalog:2')\n"
    "mesh.service('frontend', run='python frontend.py', upstreams=['catalog'])\n"
    "mesh.gateway(port=8080, routes={'/': 'frontend'})\n"
)
NO_IMAGE = (
    "Meshfile.py:5: service 'frontend': run= is a local command and no image is given; "
    "image 'frontend:latest' (a placeholder) runs the command; give image= or "
    "--image frontend=IMAGE\n"
)


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Meshfile.py").write_text(MESHFILE, encoding="utf-8")
    return tmp_path


def test_writes_valid_yaml_to_stdout_and_findings_to_stderr(
    in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "kubernetes"]) == 0
    captured = capsys.readouterr()
    assert captured.err == NO_IMAGE
    objects = [item for item in yaml.safe_load_all(captured.out) if item]
    assert len(objects) == 15
    for body in objects:
        validate(body)
    frontend = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "frontend"
    )
    container = frontend["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c", "python frontend.py"]


def test_the_same_meshfile_gives_the_same_bytes(
    in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "kubernetes", "-o", "-"]) == 0
    first = capsys.readouterr().out
    assert main(["export", "kubernetes", "-f", str(in_tmp / "Meshfile.py")]) == 0
    assert capsys.readouterr().out == first


def test_image_and_namespace_options(
    in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["export", "kubernetes", "--namespace", "prod", "--image", "frontend=shop/web:3"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    objects = [item for item in yaml.safe_load_all(captured.out) if item]
    assert objects[0]["metadata"]["name"] == "prod"
    assert {o["metadata"].get("namespace") for o in objects[1:]} == {"prod"}
    assert "image: shop/web:3\n" in captured.out


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("frontend", "--image 'frontend': write SERVICE=IMAGE"),
        ("fronted=x:1", "--image 'fronted=x:1': no service 'fronted' in the Meshfile"),
    ],
)
def test_a_wrong_image_option_is_a_usage_error(
    in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str], image: str, message: str
) -> None:
    assert main(["export", "kubernetes", "--image", image]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_a_namespace_kubernetes_would_refuse_is_a_usage_error(
    in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "kubernetes", "--namespace", "Prod_1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--namespace 'Prod_1' is not a Kubernetes namespace name" in captured.err


def test_strict_fails_on_findings_and_writes_nothing(
    in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "kubernetes", "--strict"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(NO_IMAGE)
    assert "1 setting(s) have no Kubernetes/Istio equivalent (--strict); nothing written" in (
        captured.err
    )
    strict_ok = ["export", "kubernetes", "--strict", "--image", "frontend=shop/web:3"]
    assert main(strict_ok) == 0


def test_output_directory_gets_one_numbered_file_per_object(
    in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "kubernetes", "-o", "k8s"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.endswith("wrote 15 objects to k8s\n")
    names = sorted(path.name for path in (in_tmp / "k8s").iterdir())
    assert names[:3] == [
        "01-namespace-shop.yaml",
        "02-serviceaccount-catalog.yaml",
        "03-serviceaccount-frontend.yaml",
    ]
    assert names[-1] == "15-virtualservice-shop-gateway.yaml"
    assert main(["export", "kubernetes"]) == 0
    whole = capsys.readouterr().out
    joined = "".join((in_tmp / "k8s" / name).read_text(encoding="utf-8") for name in names)
    assert joined == whole
    (in_tmp / "k8s" / "notes.txt").write_text("mine")
    (in_tmp / "Meshfile.py").write_text(MESHFILE.replace("mesh.gateway", "# mesh.gateway"))
    assert main(["export", "kubernetes", "-o", "k8s"]) == 0
    assert capsys.readouterr().err.endswith(
        "wrote 13 objects to k8s (removed 2 left from an earlier export)\n"
    )
    left = sorted(path.name for path in (in_tmp / "k8s").iterdir())
    assert left == sorted([*names[:13], "notes.txt"])


def test_a_broken_meshfile_exits_1_with_its_problems(
    in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "Meshfile.py").write_text(MESHFILE + "mesh.service('x', run='y', replicas='2')\n")
    assert main(["export", "kubernetes"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Meshfile.py:7:" in captured.err
