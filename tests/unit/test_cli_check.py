"""``meshkit check`` and ``meshkit spec``, in-process and once as a real process."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from meshkit.cli import main

GOOD = (
    "from meshkit import Mesh\n"
    "mesh = Mesh('shop')\n"
    "print('meshfile says hi')\n"
    "mesh.service('catalog', version='v1', run='c', replicas=2)\n"
    "mesh.service('catalog', version='v2', run='c')\n"
    "mesh.service('frontend', run='f', upstreams=['catalog'])\n"
)
BAD = (
    "from meshkit import Mesh\n"
    "mesh = Mesh('shop')\n"
    "mesh.service('catalog', run='c')\n"
    "mesh.service('frontend', run='f', upstreams=['catalogue'], replicas=0)\n"
)


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_ok(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "Meshfile.py").write_text(GOOD)
    assert main(["check"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "Meshfile.py: ok (2 services, 4 instances)\n"
    assert "meshfile says hi" in captured.err


def test_check_problems(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "deploy").mkdir()
    (in_tmp / "deploy" / "mesh.py").write_text(BAD)
    assert main(["check", "-f", "deploy/mesh.py"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "deploy/mesh.py:4: service 'frontend': replicas must be at least 1, got 0",
        "deploy/mesh.py:4: service 'frontend': upstream 'catalogue' is not a service in this"
        " mesh (did you mean 'catalog'?)",
    ]


def test_check_without_a_meshfile(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 1
    assert capsys.readouterr().err == (
        f"meshkit: no Meshfile found (looked for Meshfile.py and meshfile.py in {in_tmp});"
        " pass -f FILE\n"
    )


def test_spec_prints_the_spec(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "Meshfile.py").write_text(GOOD)
    assert main(["spec", "-f", "Meshfile.py"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["name"] == "shop"
    assert spec["file"] == str(in_tmp / "Meshfile.py")
    assert [(s["name"], s["version"], s["replicas"]) for s in spec["services"]] == [
        ("catalog", "v1", 2),
        ("catalog", "v2", 1),
        ("frontend", None, 1),
    ]


def test_spec_with_problems(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "Meshfile.py").write_text(BAD)
    assert main(["spec"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("Meshfile.py:4: ")


def test_check_as_a_real_process(in_tmp: pathlib.Path) -> None:
    (in_tmp / "Meshfile.py").write_text(GOOD)
    (in_tmp / "Bad.py").write_text(BAD)
    environment = {**os.environ, "PYTHONWARNINGS": "error"}
    good = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "check", "-f", "Meshfile.py"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert (good.returncode, good.stdout) == (0, "Meshfile.py: ok (2 services, 4 instances)\n")
    bad = subprocess.run(
        [sys.executable, "-m", "meshkit.cli", "check", "-f", "Bad.py"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[0] == (
        "Bad.py:4: service 'frontend': replicas must be at least 1, got 0"
    )
