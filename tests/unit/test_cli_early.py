"""``meshkit up`` starts the sidecar template before it imports its control plane."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys

import pytest

from meshkit import cli
from meshkit.cli import early
from meshkit.dsl.evaluate.evaluation import evaluate
from meshkit.runtime.lineage import Owners
from meshkit.runtime.template_start import StartedTemplate

NOT_YET_IMPORTED = """
import sys
import meshkit.cli.early
heavy = sorted({"trio", "anyio", "cryptography", "meshkit.runtime.mesh"} & set(sys.modules))
print(heavy)
"""


def test_the_early_start_imports_nothing_heavy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", NOT_YET_IMPORTED], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["up"], True),
        (["up", "-f", "Meshfile.py", "--no-watch"], True),
        (["up", "--help"], False),
        (["-C", "elsewhere", "up"], False),
        (["status"], False),
        ([], False),
    ],
)
def test_only_a_plain_up_starts_the_template(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], starts: bool
) -> None:
    started: list[Owners] = []

    def fake_start(owners: Owners) -> StartedTemplate | None:
        started.append(owners)
        return None

    monkeypatch.setattr(early, "start_template", fake_start)
    early.start_for(argv)
    assert bool(started) is starts
    assert early.take() is None


def test_a_template_nobody_takes_is_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = socket.socketpair()
    started = StartedTemplate(pid=0, tag="run.1.", owners=Owners("run"), link=ours)
    monkeypatch.setattr(early, "start_template", lambda owners: started)
    with pytest.raises(SystemExit):
        cli.main(["up", "--no-such-option"])
    # The template sees the end of its socket, and exits.
    with theirs:
        theirs.settimeout(5)
        assert theirs.recv(1) == b""
    assert early.take() is None


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], "Meshfile.py"),
        (["-f", "other.py", "--no-watch"], "other.py"),
        (["--file=other.py"], "other.py"),
        (["--file", "sub"], "sub/meshfile.py"),
        (["-f", "missing.py"], None),
    ],
)
def test_the_meshfile_is_found_as_up_finds_it(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    expected: str | None,
) -> None:
    (tmp_path / "Meshfile.py").write_text("")
    (tmp_path / "other.py").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "meshfile.py").write_text("")
    monkeypatch.chdir(tmp_path)
    found = early.meshfile_named(arguments)
    assert found == (None if expected is None else str(tmp_path / expected))


def test_the_early_evaluation_is_taken_for_its_own_meshfile_only(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text("from meshkit import Mesh\nmesh = Mesh('shop')\nmesh.service('a', run='x')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(early, "start_template", lambda owners: None)
    early.start_for(["up"])
    assert early.take_evaluation(str(tmp_path / "other.py")) is None  # and it was ended
    early.start_for(["up"])
    process = early.take_evaluation("Meshfile.py")
    assert process is not None
    result = evaluate(meshfile, started=process)
    assert result.spec is not None and result.spec.services[0].name == "a"
    early.start_for(["up"])
    waiting = early._evaluations[0]
    early.abandon()
    assert waiting.returncode is not None and early.take_evaluation("Meshfile.py") is None
