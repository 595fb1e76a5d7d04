"""``meshkit fault`` and ``meshkit restart``: arguments to control API requests, and output."""

from __future__ import annotations

import argparse

import pytest

from meshkit.cli import SUBCOMMANDS, build_parser, main
from meshkit.cli.fault import UsageError, format_answer, plan_request
from meshkit.cli.status import describe_fault, format_status


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["fault", *argv])


def test_fault_and_restart_are_subcommands() -> None:
    assert {"fault", "restart"} <= set(SUBCOMMANDS)
    assert build_parser().parse_args(["restart", "catalog"]).service == "catalog"


def test_an_injection_becomes_a_post_with_every_option() -> None:
    method, path, body = plan_request(
        parse(
            "catalog",
            "--abort",
            "503",
            "--delay",
            "200ms",
            "--percent",
            "50",
            "--path-prefix",
            "/items",
            "--header",
            "X-Canary=1",
            "--duration",
            "30s",
        )
    )
    assert (method, path) == ("POST", "/v1/faults")
    assert body == {
        "service": "catalog",
        "abort": 503,
        "delay": 0.2,
        "percent": 50.0,
        "path_prefix": "/items",
        "headers": {"x-canary": "1"},
        "duration": 30.0,
    }
    _, _, grpc = plan_request(parse("catalog", "--abort", "Unavailable"))
    assert grpc is not None and (grpc["abort"], grpc["duration"]) == ("unavailable", None)


def test_clear_and_list() -> None:
    assert plan_request(parse("catalog", "--clear")) == (
        "DELETE",
        "/v1/faults?service=catalog",
        None,
    )
    assert plan_request(parse("--list")) == ("GET", "/v1/faults", None)
    assert plan_request(parse()) == ("GET", "/v1/faults", None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("catalog", "--delay", "two"), "--delay 'two' is not a duration (use a number"),
        (("catalog", "--abort", "teapot"), "--abort 'teapot' is neither an HTTP status"),
        (("catalog", "--abort", "99"), "from 200 to 599"),
        (("catalog", "--abort", "503", "--percent", "150"), "--percent '150'"),
        (("catalog", "--abort", "503", "--duration", "0"), "--duration must be longer than 0"),
        (("catalog", "--abort", "503", "--header", "x"), "write it as NAME=VALUE"),
        (("catalog", "--abort", "503", "--path-prefix", "items"), "starts with '/'"),
        (("catalog",), "say what to do to catalog: --abort 503"),
        (("--clear",), "--clear needs the SERVICE"),
    ],
)
def test_bad_arguments_name_the_flag(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        plan_request(parse(*argv))
    assert message in str(caught.value)


def test_bad_arguments_exit_2_before_reaching_any_mesh(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fault", "catalog", "--delay", "two"]) == 2
    assert "meshkit fault: --delay 'two' is not a duration" in capsys.readouterr().err


def test_faults_are_described_for_people() -> None:
    fault = {
        "id": "f1",
        "service": "catalog",
        "abort": 503,
        "delay": 0.2,
        "percent": 50.0,
        "path_prefix": "/items",
        "headers": {"x-canary": "1"},
        "expires_at": 130.0,
    }
    assert describe_fault(fault, now=100.0) == (
        "f1: catalog abort 503 + delay 200ms on 50% of requests under /items "
        "with x-canary: 1, 30s left"
    )
    table = format_status({"mesh": "shop", "faults": [fault]}, now=100.0)
    assert "fault f1: catalog abort 503" in table
    assert format_answer("GET", None, {"faults": []}) == "meshkit: no faults in force"
    cleared = format_answer("DELETE", None, {"removed": ["f1"], "synced": False})
    assert cleared == "meshkit: cleared f1 (not every sidecar has applied it yet)"
