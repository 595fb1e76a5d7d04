"""``meshkit up`` starts the sidecar template before it imports its control plane."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from meshkit import cli
from meshkit.cli import early
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
