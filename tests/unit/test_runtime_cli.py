from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.cli import main
from meshkit.cli.status import format_age, format_status

DOCUMENT = {
    "mesh": "shop",
    "ready": False,
    "file": "Meshfile.py",
    "gateways": [{"url": "http://127.0.0.1:8080", "tls_url": "https://localhost:8443"}],
    "services": [
        {
            "name": "catalog",
            "version": "v1",
            "instances": [
                {
                    "id": "catalog-v1-0",
                    "state": "backoff",
                    "pid": None,
                    "sidecar_pid": 11,
                    "restarts": 4,
                    "port": 9001,
                    "inbound_port": 7001,
                    "outbound_port": 7002,
                    "admin_port": 7003,
                    "started_at": 1000.0,
                    "cert_expires_at": 4675.0,
                    "cert_state": "valid",
                }
            ],
        }
    ],
    "errors": ["catalog-v1-0: app exited with status 3"],
}


def test_status_table_has_every_column() -> None:
    text = format_status(DOCUMENT, now=1075.0)
    lines = text.splitlines()
    assert lines[0] == "mesh 'shop' (not ready) from Meshfile.py"
    assert lines[1] == "gateway http://127.0.0.1:8080 https://localhost:8443"
    assert lines[2].split() == [
        "SERVICE", "VERSION", "INSTANCE", "STATE", "PID", "SIDECAR", "RESTARTS", "PORT", "INBOUND", "AGE",
        "CERT", "SYNC",
    ]  # fmt: skip
    assert lines[3].split() == [
        "catalog", "v1", "catalog-v1-0", "backoff", "-", "11", "4", "9001", "7001", "1m15s",
        "valid", "1h00m", "-",
    ]  # fmt: skip
    assert lines[4] == "error: catalog-v1-0: app exited with status 3"


def test_ages_read_well() -> None:
    assert [format_age(s) for s in (None, 5.0, 61.0, 7322.0)] == ["-", "5s", "1m01s", "2h02m"]


@pytest.mark.parametrize("command", ["status", "down"])
def test_no_running_mesh_is_a_clear_error(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([command]) == 1
    assert "no mesh is running in" in capsys.readouterr().err
