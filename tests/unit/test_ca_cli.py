"""``meshkit ca``: show (and create) the root, export it; run in-process."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest

from meshkit.ca import RootCA
from meshkit.cli import ca as ca_command


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="meshkit")
    ca_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return ca_command.run(parser.parse_args(["ca", *argv]))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_creates_and_shows_the_root(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([]) == 0
    out = capsys.readouterr().out
    root = RootCA.load(in_tmp / ".meshkit" / "ca")
    assert f"root certificate: {in_tmp / '.meshkit' / 'ca' / 'root.pem'}" in out
    assert "CN=meshkit root CA (default),O=meshkit" in out
    assert root.fingerprint_sha256 in out
    assert "curl --cacert" in out


def test_second_run_shows_the_same_root(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run([])
    first = capsys.readouterr().out
    _run([])
    assert capsys.readouterr().out == first


def test_mesh_name_comes_from_the_meshfile(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "shop.py").write_text(
        'import meshkit\nmesh = meshkit.Mesh("shop")\nmesh.service("a", run="true")\n'
    )
    assert _run(["-f", "shop.py"]) == 0
    assert "meshkit root CA (shop)" in capsys.readouterr().out


def test_meshfile_in_current_directory_is_used(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "Meshfile.py").write_text('from meshkit import Mesh\nmesh = Mesh(name="books")\n')
    assert _run([]) == 0
    assert "meshkit root CA (books)" in capsys.readouterr().out


def test_unreadable_meshfile_is_reported(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["-f", "missing.py"]) == 2
    assert "cannot read the Meshfile missing.py" in capsys.readouterr().err


def test_export_writes_the_root(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--export", "trust.pem"]) == 0
    root = RootCA.load(in_tmp / ".meshkit" / "ca")
    assert (in_tmp / "trust.pem").read_bytes() == root.pem
    assert stat.S_IMODE((in_tmp / "trust.pem").stat().st_mode) == 0o644
    assert "exported to:      trust.pem" in capsys.readouterr().out


def test_readable_key_is_refused(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run([])
    key = in_tmp / ".meshkit" / "ca" / "root-key.pem"
    os.chmod(key, 0o644)
    capsys.readouterr()
    assert _run([]) == 1
    err = capsys.readouterr().err
    assert "chmod 600" in err
    assert "0644" in err
