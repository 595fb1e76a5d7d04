from __future__ import annotations

import io
from pathlib import Path

import pytest

from meshkit.dsl.spec import MeshSpec, ServiceSpec
from meshkit.runtime.guardian import guard, owners_argument, parse_line
from meshkit.runtime.logs import LogHub, colour_for, format_line
from meshkit.runtime.policy.plan import PlanError, restrict_spec, startup_order
from meshkit.runtime.ports import (
    APP_PORT_SPAN,
    PortAllocator,
    app_port,
    app_port_range,
    ephemeral_port,
    ephemeral_range,
)
from meshkit.runtime.supervisor import app_environment

SPEC = MeshSpec(
    name="shop",
    file="Meshfile.py",
    services=(
        ServiceSpec(
            name="frontend", command="f", depends_on=("catalog",), upstreams=("catalog", "user-db")
        ),
        ServiceSpec(name="catalog", version="v1", command="c", depends_on=("user-db",)),
        ServiceSpec(name="user-db", command="d"),
        ServiceSpec(name="mailer", command="m"),
    ),
)


def test_ports_are_never_handed_out_twice() -> None:
    probes = iter([5000, 5000, 5001, 5000, 5002])
    allocator = PortAllocator(probe=lambda: next(probes))
    assert [allocator.allocate(), allocator.allocate(), allocator.allocate()] == [5000, 5001, 5002]
    allocator.release(5001)
    assert allocator.allocated == frozenset({5000, 5002})


def test_running_out_of_ports_is_explained() -> None:
    allocator = PortAllocator(probe=lambda: 5000, attempts=3)
    allocator.allocate()
    with pytest.raises(RuntimeError, match="could not find a free port"):
        allocator.allocate()


def test_real_ports_are_distinct_and_nonzero() -> None:
    allocator = PortAllocator()
    ports = {allocator.allocate() for _ in range(20)}
    assert len(ports) == 20 and 0 not in ports
    assert ephemeral_port() > 0


def test_app_ports_lie_next_to_the_ephemeral_range_never_in_it() -> None:
    """Sidecars bind port 0 (the ephemeral range): an app's $PORT must never be one of those."""
    assert app_port_range((32768, 60999)) == range(32768 - APP_PORT_SPAN, 32768)
    assert app_port_range((2000, 40000)) == range(40001, 40001 + APP_PORT_SPAN)
    assert app_port_range((1024, 65535)) is None
    first, last = ephemeral_range()
    assert app_port_range((first, last)) is not None  # this host has room for app ports
    allocator = PortAllocator()
    for _ in range(50):
        assert not first <= app_port() <= last
        assert not first <= allocator.allocate() <= last


def test_startup_order_puts_dependencies_first() -> None:
    assert startup_order(SPEC) == ["user-db", "catalog", "frontend", "mailer"]


def test_a_dependency_cycle_is_named() -> None:
    spec = MeshSpec(
        name="x",
        file="M",
        services=(
            ServiceSpec(name="a", command="a", depends_on=("b",)),
            ServiceSpec(name="b", command="b", depends_on=("a",)),
        ),
    )
    with pytest.raises(PlanError, match="a -> b -> a"):
        startup_order(spec)


def test_restrict_keeps_the_dependency_closure() -> None:
    assert restrict_spec(SPEC, ("catalog",)).service_names() == ["catalog", "user-db"]
    assert restrict_spec(SPEC, ()).service_names() == SPEC.service_names()
    with pytest.raises(PlanError, match="no service called 'nope'"):
        restrict_spec(SPEC, ("nope",))


def test_app_environment_follows_the_contract() -> None:
    frontend = ServiceSpec(
        name="frontend",
        command="f",
        upstreams=("catalog", "user-db"),
        env={"PORT_NAME": "x", "NO_PROXY": "svc"},
    )
    env = app_environment(
        deployment=frontend,
        instance_id="frontend-0",
        port=9001,
        sidecar_ports={
            "outbound": 7001,
            "upstream:catalog": 7002,
            "upstream:user-db": 7003,
            "inbound": 7004,
        },
        base_env={"PATH": "/usr/bin", "HOME": "/home/me"},
    )
    assert env["PORT"] == "9001"
    assert env["MESHKIT_SERVICE"] == "frontend"
    assert env["MESHKIT_INSTANCE"] == "frontend-0"
    assert "MESHKIT_VERSION" not in env
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://127.0.0.1:7001"
    assert env["CATALOG_URL"] == "http://127.0.0.1:7002"
    assert env["USER_DB_ADDR"] == "127.0.0.1:7003"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["NO_PROXY"] == "svc"
    assert env["PATH"].endswith(":/usr/bin")
    assert env["HOME"] == "/home/me"


def test_guardian_reads_registrations() -> None:
    groups: set[int] = set()
    for line in [b"+100\n", b"+200\n", b"-100\n", b"junk\n", b"+1\n", b"+\n"]:
        parse_line(line, groups)
    assert groups == {200}
    assert guard(io.BytesIO(b"+999999999\n-999999999\n")) == []


def test_guardian_reads_its_one_argument_without_argparse() -> None:
    assert owners_argument(["--owners", "ab12."]) == "ab12."
    assert owners_argument(["--owners=ab12."]) == "ab12."
    assert owners_argument([]) is None
    for wrong in (["--owners"], ["ab12."], ["--owners", "a", "b"], ["--other", "x"]):
        with pytest.raises(ValueError):
            owners_argument(wrong)


def test_log_lines_go_to_file_and_terminal(tmp_path: Path) -> None:
    terminal = io.StringIO()
    hub = LogHub(tmp_path, terminal=terminal)
    sink = hub.sink(file_stem="frontend-0", display_name="frontend-0", colour_key="frontend")
    sink.write_line("listening")
    hub.close()
    assert (tmp_path / "frontend-0.log").read_text() == "listening\n"
    assert terminal.getvalue().endswith(" frontend-0 | listening\n")
    assert "\x1b[" not in terminal.getvalue()


def test_colours_are_stable_per_name() -> None:
    assert colour_for("catalog") == colour_for("catalog")
    line = format_line(name="catalog-0", line="hi", colour_key="catalog", coloured=True, now=0.0)
    assert line.startswith(f"\x1b[{colour_for('catalog')}m")
    assert line.endswith(" hi")
