"""``meshkit up`` holds only what it runs: the parser imports the named subcommand alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshkit.cli import _command_of, build_parser, main

SCRIPT = """
import json, sys
from meshkit.cli import build_parser
build_parser(["-C", ".", "up", "--no-watch"]).parse_args(["-C", ".", "up", "--no-watch"])
import meshkit.cli.up
print(json.dumps(sorted(sys.modules)))
"""


def test_the_control_plane_imports_no_other_subcommand_nor_package_metadata() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    modules = set(json.loads(done.stdout))
    assert "meshkit.cli.up" in modules
    unwanted = {"importlib.metadata", "http.server", "meshkit.export", "meshkit.cli.export"}
    assert not modules & unwanted, modules & unwanted


@pytest.mark.parametrize(
    ("arguments", "command"),
    [
        (["up", "-f", "x"], "up"),
        (["-C", "some dir", "status"], "status"),
        (["--dir", "d", "logs"], "logs"),
        (["--dir=d", "-Cd", "down"], "down"),
        (["--help"], None),
        (["--version"], None),
        (["bogus"], None),
        (["-C"], None),
        ([], None),
    ],
)
def test_the_named_subcommand_is_found_after_the_global_options(
    arguments: list[str], command: str | None
) -> None:
    assert _command_of(arguments) == command


def test_every_subcommand_is_listed_when_none_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser(["bogus"]).parse_args(["bogus"])
    assert "choose from 'up', 'down'" in capsys.readouterr().err


def test_version_is_read_when_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("meshkit ")
