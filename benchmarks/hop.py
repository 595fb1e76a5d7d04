"""One hop of the mesh against nginx and against no proxy at all.

    python benchmarks/hop.py [--rounds 3] [--duration 10] [--rate 1000]
                             [--json benchmarks/results/hop.json]
                             [--only direct,nginx,trio-floor,meshkit,meshkit-h2hop]
                             [--client-proto h1|h2] [--install]

Setups, each on 127.0.0.1 with ports the OS picks, each started afresh for its
turn in every round (round r runs the setups rotated by r, so slow drift of the
machine spreads evenly):

- direct:  load generator -> nginx backend (1 KiB body);
- nginx:   load generator -> nginx outbound -> mTLS 1.3 (P-256) -> nginx inbound -> backend;
- trio-floor: the same hop through two bare trio + httptools proxies
           (``hopbench/triofloor.py``: parse, forward, trio's ``SSLStream``,
           no L7 features), the floor of a trio design;
- meshkit: load generator -> loadgen's sidecar -> mTLS -> backend's sidecar -> backend,
           started by ``meshkit up`` on a generated Meshfile;
- meshkit-h2hop: the same, with the hop between the sidecars on one multiplexed
           HTTP/2 connection per peer (``MESHKIT_SIDECAR_PROTOCOL=h2``) instead of
           pooled HTTP/1.1, for HTTP/1.1 clients.

``--client-proto h2`` makes the load generator an HTTP/2 client (h2c, prior
knowledge): direct talks to an nginx ``listen ... http2`` backend; the nginx
pair's outbound listens with ``http2`` (nginx proxies upstream over HTTP/1.1
only, so its hop stays HTTP/1.1); meshkit's sidecars take HTTP/2 clients on
the same listener and send their requests over HTTP/2 between sidecars (the
sidecar protocol setting only concerns HTTP/1.1 clients).  Saturation is then
``h2load -c16 -m10 -D<s>`` instead of wrk.

Each turn: a warm-up, 2000 sequential requests on one connection, the paced
run (h2load, ``--rate`` req/s over 16 connections; proxies' CPU is measured over
it), then saturation (wrk -t1 -c16).  Prints one table of medians, the issue's
targets as met/missed, and writes the JSON file.  Not a test; CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs
from hopbench import load
from hopbench.certs import make_bench_certs
from hopbench.meshkit_hop import start_meshkit_hop
from hopbench.nginx import BODY_BYTES, nginx_version, start_backend, start_pair
from hopbench.procs import (
    BenchError,
    ProcessTree,
    Servers,
    free_port,
    sigterm_as_keyboard_interrupt,
)
from hopbench.report import (
    ProxySample,
    SetupSample,
    check_http2_share,
    check_targets,
    render_table,
    summarise,
    to_json,
)

SETUPS = ("direct", "nginx", "trio-floor", "meshkit", "meshkit-h2hop")
DEFAULT_SETUPS = ("direct", "nginx", "trio-floor", "meshkit")
TRIO_FLOOR = Path(__file__).resolve().parent / "hopbench" / "triofloor.py"
ONE_CONNECTION_REQUESTS = 2000
REQUIRED_TOOLS = {"wrk": "wrk", "h2load": "nghttp2-client", "nginx": "nginx"}


@attrs.frozen(kw_only=True)
class Target:
    """A running setup: the URL to load and its proxies' root pids by role."""

    url: str
    proxies: tuple[tuple[str, int], ...]
    control_plane: int | None = None  # meshkit's ``meshkit up``, measured on its own


SetupStarter = Callable[[Servers, Path, bool], Target]


def start_direct(servers: Servers, workdir: Path, h2: bool) -> Target:
    _, port = start_backend(servers, workdir=workdir, http2=h2)
    return Target(url=f"http://127.0.0.1:{port}/", proxies=())


def start_nginx_pair(servers: Servers, workdir: Path, h2: bool) -> Target:
    _, backend_port = start_backend(servers, workdir=workdir)
    certs = make_bench_certs(workdir / "certs")
    outbound, outbound_port, inbound = start_pair(
        servers, workdir=workdir, backend_port=backend_port, certs=certs, http2=h2
    )
    return Target(
        url=f"http://127.0.0.1:{outbound_port}/",
        proxies=(("outbound", outbound.pid), ("inbound", inbound.pid)),
    )


def start_trio_floor(servers: Servers, workdir: Path, h2: bool) -> Target:
    if h2:
        raise BenchError("the trio floor speaks HTTP/1.1 only; leave it out of --client-proto h2")
    _, backend_port = start_backend(servers, workdir=workdir)
    certs_dir = workdir / "certs"
    make_bench_certs(certs_dir)
    pids = []
    upstream_port = backend_port
    for role in ("inbound", "outbound"):
        port = free_port()
        proxy = servers.start(
            name=f"trio floor {role}",
            argv=[sys.executable, str(TRIO_FLOOR), role, "--listen", str(port),
                  "--to", str(upstream_port), "--certs", str(certs_dir)],
            log_path=workdir / f"trio-floor-{role}.log",
        )
        proxy.wait_for_port(port)
        pids.append((role, proxy.pid))
        upstream_port = port
    return Target(url=f"http://127.0.0.1:{upstream_port}/", proxies=tuple(reversed(pids)))


def start_meshkit(servers: Servers, workdir: Path, h2: bool) -> Target:
    # Its own directory: the load generators' logs in ``workdir`` would wake its Meshfile
    # watcher on every write and count in the control plane's CPU.
    hop = start_meshkit_hop(servers, directory=workdir / "mesh")
    return Target(
        url=hop.url,
        proxies=(("outbound", hop.outbound_pid), ("inbound", hop.inbound_pid)),
        control_plane=hop.control_plane_pid,
    )


def start_meshkit_h2hop(servers: Servers, workdir: Path, h2: bool) -> Target:
    hop = start_meshkit_hop(servers, directory=workdir / "mesh", sidecar_protocol="h2")
    return Target(
        url=hop.url,
        proxies=(("outbound", hop.outbound_pid), ("inbound", hop.inbound_pid)),
        control_plane=hop.control_plane_pid,
    )


STARTERS: dict[str, SetupStarter] = {
    "direct": start_direct,
    "nginx": start_nginx_pair,
    "trio-floor": start_trio_floor,
    "meshkit": start_meshkit,
    "meshkit-h2hop": start_meshkit_h2hop,
}


def measure(
    setup: str, round_number: int, target: Target, *, args: argparse.Namespace, workdir: Path
) -> SetupSample:
    """Warm up, then one connection, the paced run (with CPU), and saturation."""
    h2 = args.client_proto == "h2"
    if h2:
        load.check_response_h2(target.url, body_bytes=BODY_BYTES)
    else:
        load.check_response(target.url, body_bytes=BODY_BYTES)
    load.warm_up(target.url, h2=h2)
    one_connection = load.one_connection(
        target.url,
        requests=ONE_CONNECTION_REQUESTS,
        log_path=workdir / "one-connection.tsv",
        h2=h2,
    )
    trees = {role: ProcessTree.of(pid) for role, pid in target.proxies}
    rss_after_warm_up = {role: tree.rss_bytes() for role, tree in trees.items()}
    # The control plane alone, not its tree (the sidecars are its descendants).
    control = (
        None
        if target.control_plane is None
        else ProcessTree(root=target.control_plane, pids=(target.control_plane,))
    )
    control_before = 0.0 if control is None else control.cpu_seconds()
    cpu_before = {role: tree.cpu_seconds() for role, tree in trees.items()}
    paced = load.paced(
        target.url, rate=args.rate, duration=args.duration, log_path=workdir / "paced.tsv", h2=h2
    )
    cpu_used = {role: tree.cpu_seconds() - cpu_before[role] for role, tree in trees.items()}
    control_used = None if control is None else control.cpu_seconds() - control_before
    if h2:
        saturation = load.saturate_h2(target.url, duration=args.duration)
    else:
        saturation = load.saturate(target.url, duration=args.duration)
    proxies = tuple(
        ProxySample(
            role=role,
            # CPU seconds per request x 1000 = vCPU needed per 1000 req/s.
            vcpu_per_1k_rps=cpu_used[role] * 1000 / max(paced.requests, 1),
            rss_after_warm_up_bytes=rss_after_warm_up[role],
            rss_after_load_bytes=tree.rss_bytes(),
        )
        for role, tree in trees.items()
    )
    return SetupSample(
        setup=setup,
        round=round_number,
        saturation=saturation,
        paced=paced,
        one_connection=one_connection,
        proxies=proxies,
        control_plane_vcpu_per_1k_rps=None
        if control_used is None
        else control_used * 1000 / max(paced.requests, 1),
    )


def run_turn(setup: str, round_number: int, args: argparse.Namespace, root: Path) -> SetupSample:
    workdir = root / f"round{round_number}-{setup}"
    workdir.mkdir()
    with Servers() as servers:
        target = STARTERS[setup](servers, workdir, args.client_proto == "h2")
        return measure(setup, round_number, target, args=args, workdir=workdir)


def round_order(setups: Sequence[str], round_number: int) -> list[str]:
    """Round 1 runs the setups in order, round 2 starts from the second, and so on."""
    shift = (round_number - 1) % len(setups)
    return [*setups[shift:], *setups[:shift]]


@contextmanager
def temporary_root(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="meshkit-hop-"))
    try:
        yield root
    finally:
        if keep:
            print(f"kept logs and configs in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def ensure_tools(install: bool) -> None:
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    command = ["apt-get", "install", "-y", *missing]
    if not install:
        raise BenchError(
            f"missing tools; install them with:  sudo {' '.join(command)}\n"
            "(or run this benchmark with --install)"
        )
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run(
        [*sudo, *command], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/hop.py",
        description="One mesh hop (HTTP/1.1 keep-alive, mTLS 1.3) vs an nginx pair vs direct.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every setup (default 3)")
    parser.add_argument(
        "--duration",
        type=int,
        default=10,
        help="seconds of each paced and saturation run (default 10)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="paced request rate in req/s, over 16 connections (default 1000)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("benchmarks/results/hop.json"),
        help="where to write the results (default benchmarks/results/hop.json)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated setups to run, of {','.join(SETUPS)} "
        f"(default {','.join(DEFAULT_SETUPS)}; without trio-floor, HTTP/1.1 only, "
        "under --client-proto h2)",
    )
    parser.add_argument(
        "--client-proto",
        choices=("h1", "h2"),
        default="h1",
        help="the load generator's protocol: HTTP/1.1 (default) or HTTP/2 with prior knowledge",
    )
    parser.add_argument(
        "--h1-results",
        type=Path,
        default=None,
        help="with --client-proto h2: the JSON of an HTTP/1.1 run, whose meshkit saturation "
        "the HTTP/2 figure is compared with",
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="apt-get install wrk, nghttp2-client and nginx if missing",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (configs, logs) for inspection",
    )
    args = parser.parse_args(argv)
    if args.only is None:
        h1_only = {"trio-floor"} if args.client_proto == "h2" else set()
        args.only = ",".join(name for name in DEFAULT_SETUPS if name not in h1_only)
    setups = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(setups) - set(SETUPS))
    if unknown or not setups:
        parser.error(f"--only takes a subset of {','.join(SETUPS)}; got {args.only!r}")
    args.setups = [name for name in SETUPS if name in setups]
    if args.rounds < 1 or args.duration < 1 or args.rate <= 0:
        parser.error("--rounds and --duration must be at least 1, --rate positive")
    return args


def h1_meshkit_rps(path: Path | None) -> float | None:
    """meshkit's median saturation in the HTTP/1.1 run written to ``path``."""
    if path is None:
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchError(f"cannot read the HTTP/1.1 results {path}: {error}") from error
    if result.get("settings", {}).get("client_proto") != "h1":
        raise BenchError(f"{path} is not an HTTP/1.1 (--client-proto h1) run")
    for summary in result.get("medians", []):
        if summary.get("setup") == "meshkit":
            return float(summary["max_rps"])
    raise BenchError(f"{path} has no meshkit setup to compare with")


def machine_facts() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "nginx": nginx_version(),
        "wrk": load.tool_version(["wrk", "--version"]),
        "h2load": load.tool_version(["h2load", "--version"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ensure_tools(args.install)
        samples: list[SetupSample] = []
        with sigterm_as_keyboard_interrupt(), temporary_root(args.keep) as root:
            for round_number in range(1, args.rounds + 1):
                for setup in round_order(args.setups, round_number):
                    print(
                        f"round {round_number}/{args.rounds}: {setup} ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    samples.append(run_turn(setup, round_number, args, root))
    except BenchError as error:
        print(f"hop benchmark: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "hop benchmark: interrupted; every process it started has been stopped", file=sys.stderr
        )
        return 130
    summaries = [summarise([s for s in samples if s.setup == name]) for name in args.setups]
    checks = [
        *check_targets(summaries),
        *check_http2_share(summaries, h1_meshkit_rps=h1_meshkit_rps(args.h1_results)),
    ]
    print()
    client = "HTTP/2 (h2c) clients" if args.client_proto == "h2" else "HTTP/1.1 keep-alive"
    saturation_tool = "h2load -c16 -m10" if args.client_proto == "h2" else "wrk -t1 -c16"
    print(
        f"One hop, {client}, 1 KiB responses; medians of {args.rounds} round(s), "
        f"{args.duration} s runs, paced at {args.rate:g} req/s over 16 connections; "
        f"saturation by {saturation_tool}"
    )
    print(render_table(summaries, rate=args.rate))
    print()
    print(
        "Targets of the issue (meshkit is the subject; nginx and the trio floor are shown "
        "for scale):"
    )
    for check in checks:
        print(check.line())
    settings = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(args).items()
        if key != "json"
    }
    result = to_json(
        settings={**settings, "json": str(args.json)},
        machine=machine_facts(),
        samples=samples,
        summaries=summaries,
        checks=checks,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
