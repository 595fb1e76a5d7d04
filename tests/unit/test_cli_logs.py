"""``meshkit logs`` over files written as sidecars and apps write them; rotation and the terminal filter."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from meshkit.cli import main
from meshkit.runtime.logs import LogHub, is_access_line, rotate

ACCESS = "2026-12-01T10:00:0{s}.000Z access GET /{p} 200 1.0ms - upstream=- in=0 out=2 request_id=- trace_id=-"


def write_mesh_logs(directory: Path) -> None:
    logs = directory / ".meshkit" / "logs"
    logs.mkdir(parents=True)
    (logs / "gateway.proxy.log").write_text(
        ACCESS.format(s=1, p="a") + "\n" + ACCESS.format(s=3, p="c") + "\n"
    )
    (logs / "catalog-v1-0.proxy.log").write_text(
        "ready\n" + ACCESS.format(s=2, p="b") + "\nconfig applied\n"
    )
    (logs / "catalog-v1-0.log").write_text("catalog listening\n")


def test_logs_interleave_by_time_with_compose_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_mesh_logs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["logs", "--access", "gateway", "catalog"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0].rstrip() for line in lines if "access" in line] == [
        "gateway.proxy",
        "catalog-v1-0.proxy",
        "gateway.proxy",
    ]
    assert [line.split()[5] for line in lines if "access" in line] == ["/a", "/b", "/c"]
    # A line with no stamp keeps its place in its file: after the line before it.
    proxy = [line for line in lines if line.startswith("catalog-v1-0.proxy")]
    assert proxy[0].endswith("| ready") and proxy[-1].endswith("| config applied")
    assert "catalog-v1-0       | catalog listening" in lines


def test_logs_leave_access_lines_out_unless_asked_and_filter_by_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_mesh_logs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["logs", "catalog"]) == 0
    out = capsys.readouterr().out
    assert " access " not in out and "gateway" not in out
    assert "catalog-v1-0.proxy | ready" in out and "catalog-v1-0       | catalog listening" in out
    assert main(["logs", "nothing"]) == 1
    assert "no log files for nothing" in capsys.readouterr().err


def test_since_leaves_out_older_lines_and_bad_durations_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_mesh_logs(tmp_path)
    monkeypatch.chdir(tmp_path)
    recent = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z access GET /new 200"
    with open(tmp_path / ".meshkit" / "logs" / "gateway.proxy.log", "a") as handle:
        handle.write(recent + "\n")
    assert main(["logs", "--access", "--since", "5m", "gateway"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"gateway.proxy | {recent}"]
    assert main(["logs", "--since", "soon"]) == 2
    assert "--since 'soon'" in capsys.readouterr().err


def test_rotated_copies_come_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_mesh_logs(tmp_path)
    logs = tmp_path / ".meshkit" / "logs"
    (logs / "catalog-v1-0.log.2").write_text("oldest\n")
    (logs / "catalog-v1-0.log.1").write_text("older\n")
    monkeypatch.chdir(tmp_path)
    assert main(["logs", "catalog-v1-0"]) == 0
    app = [line for line in capsys.readouterr().out.splitlines() if "proxy" not in line]
    assert [line.split("| ")[1] for line in app] == ["oldest", "older", "catalog listening"]


def test_rotate_keeps_the_newest_copies(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    for content in ("one", "two", "three", "four"):
        path.write_text(content)
        rotate(path, keep=3)
    assert path.read_text() == ""
    assert [(tmp_path / f"a.log.{n}").read_text() for n in (1, 2, 3)] == ["four", "three", "two"]
    assert not (tmp_path / "a.log.4").exists()


def test_the_terminal_view_rotates_big_files_and_hides_access_lines(tmp_path: Path) -> None:
    terminal = io.StringIO()
    hub = LogHub(tmp_path, terminal=terminal, max_bytes=200, keep=2)
    path = hub.follow(file_stem="web-0.proxy", colour_key="web")
    with open(path, "a") as handle:
        handle.write("ready\n" + "\n".join(ACCESS.format(s=n, p=n) for n in range(3)) + "\n")
    hub._show_new_lines(final=False)
    assert terminal.getvalue().endswith(" web-0.proxy | ready\n")
    assert " access " not in terminal.getvalue()
    assert "ready" in (tmp_path / "web-0.proxy.log.1").read_text()
    assert (tmp_path / "web-0.proxy.log").read_text().startswith("meshkit: log rotated after ")
    shown = LogHub(tmp_path, terminal=io.StringIO(), show_access=True)
    assert shown.show_access and is_access_line(ACCESS.format(s=1, p="x"))
    assert is_access_line('{"time":"2026-12-01T10:00:01.000Z","log":"access"}')
    assert not is_access_line("ready")
