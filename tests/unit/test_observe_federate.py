"""The mesh's one Prometheus page from the sidecars' pages, and who may read it (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.api import access
from meshkit.observe.federate import Scrape, federate, with_label

PAGE_A = """\
# HELP istio_requests_total Requests.
# TYPE istio_requests_total counter
istio_requests_total{reporter="source",response_code="200"} 3
# HELP istio_request_duration_milliseconds Request duration.
# TYPE istio_request_duration_milliseconds histogram
istio_request_duration_milliseconds_bucket{reporter="source",le="+Inf"} 3
istio_request_duration_milliseconds_sum{reporter="source"} 4.5
istio_request_duration_milliseconds_count{reporter="source"} 3
"""
PAGE_B = """\
# HELP istio_requests_total Requests.
# TYPE istio_requests_total counter
istio_requests_total{reporter="destination",response_code="200"} 2
bare_metric 7
"""


def test_each_family_appears_once_with_every_sidecars_samples_labelled() -> None:
    text = federate(
        [
            Scrape(instance="frontend-0", text=PAGE_A),
            Scrape(instance="catalog-v1-0", text=PAGE_B),
            Scrape(instance="reviews-0", text=None),
        ]
    )
    lines = text.splitlines()
    assert lines.count("# TYPE istio_requests_total counter") == 1
    assert lines.count("# HELP istio_requests_total Requests.") == 1
    start = lines.index("# TYPE istio_requests_total counter")
    assert lines[start + 1 : start + 3] == [
        'istio_requests_total{instance="frontend-0",reporter="source",response_code="200"} 3',
        'istio_requests_total{instance="catalog-v1-0",reporter="destination",response_code="200"} 2',
    ]
    histogram = lines.index("# TYPE istio_request_duration_milliseconds histogram")
    assert lines[histogram + 3] == (
        'istio_request_duration_milliseconds_count{instance="frontend-0",reporter="source"} 3'
    )
    assert 'meshkit_sidecar_up{instance="reviews-0"} 0' in lines
    assert 'meshkit_sidecar_up{instance="frontend-0"} 1' in lines
    assert 'bare_metric{instance="catalog-v1-0"} 7' in lines
    assert text.endswith("\n")


def test_with_label_handles_every_sample_shape() -> None:
    assert with_label("m 1", "instance", "a") == 'm{instance="a"} 1'
    assert with_label("m{} 1", "instance", "a") == 'm{instance="a"} 1'
    assert with_label('m{x="1"} 2 1700', "instance", 'a"b') == 'm{instance="a\\"b",x="1"} 2 1700'


def test_the_token_is_owner_only_and_compared_whole(tmp_path: Path) -> None:
    token = access.new_token()
    path = access.write_token(tmp_path, token)
    assert path.stat().st_mode & 0o777 == 0o600
    assert access.read_token(tmp_path) == token
    assert access.allowed(token, query=f"token={token}", headers={})
    assert access.allowed(token, query="", headers={"authorization": f"Bearer {token}"})
    assert access.allowed(
        token, query="", headers={"cookie": access.session_cookie(token).split(";")[0]}
    )
    assert not access.allowed(token, query="", headers={})
    assert not access.allowed(token, query=f"token={token[:-1]}", headers={})
    assert not access.allowed(token, query="", headers={"cookie": "meshkit_observe=nope"})
    assert not access.allowed(token, query="", headers={"cookie": "\x00;;=="})
    assert "HttpOnly" in access.session_cookie(
        token
    ) and "SameSite=Strict" in access.session_cookie(token)


def test_meshkit_dashboard_prints_the_address_with_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from meshkit.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["dashboard", "--print"]) == 1
    assert "no mesh is running from here" in capsys.readouterr().err
    run_dir = tmp_path / ".meshkit" / "run"
    run_dir.mkdir(parents=True)
    access.write_token(run_dir, "secret-token")
    (run_dir / "observe.json").write_text('{"url": "http://127.0.0.1:4321", "port": 4321}')
    assert main(["dashboard", "--print"]) == 0
    assert capsys.readouterr().out == "http://127.0.0.1:4321/?token=secret-token\n"
