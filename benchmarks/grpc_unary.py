"""gRPC unary calls through one mesh hop: grpcio client -> gateway sidecar -> mTLS -> sidecar -> grpcio server.

    python benchmarks/grpc_unary.py [--rounds 3] [--duration 8] [--threads 8] [--json FILE]

A mesh with one ``grpc`` service (a grpcio echo server written into a temporary
directory) behind the gateway; ``--threads`` client threads call ``/bench.Echo/Say``
(64 bytes each way) in a loop for ``--duration`` seconds.  Each round measures the
server directly first (the client's own ceiling), then through the mesh, and reads
the CPU the two sidecars spent (``/proc``).  Prints the medians over rounds and, with
``--json``, every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from hopbench.procs import ProcessTree, Servers, free_port
from meshbench.running import start_mesh, wait_all_ready

SERVER_APP = '''\
"""Written by benchmarks/grpc_unary.py: a grpcio echo server on $PORT (h2c)."""
import os, signal, threading
from concurrent import futures
import grpc

def same(data):
    return data

server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
handler = grpc.unary_unary_rpc_method_handler(
    lambda request, context: request, request_deserializer=same, response_serializer=same
)
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Say": handler}),))
server.add_insecure_port("127.0.0.1:" + os.environ["PORT"])
server.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
server.stop(grace=1).wait()
'''

MESHFILE = '''\
"""Written by benchmarks/grpc_unary.py."""
from meshkit import Mesh, tcp_connect

mesh = Mesh("grpcbench")
mesh.service("rpc", run={run!r}, protocol="grpc", health=tcp_connect(period="100ms"))
mesh.gateway(port=0, routes={{"/bench.Echo/": "rpc"}})
'''

PAYLOAD = b"p" * 64


def _same(data: bytes) -> bytes:
    return data


def call_loop(address: str, *, threads: int, duration: float) -> tuple[float, int]:
    """Calls per second over ``threads`` client threads (one channel each), and failures."""
    done = [0] * threads
    failed = [0] * threads
    deadline = time.monotonic() + duration

    def work(index: int) -> None:
        with grpc.insecure_channel(address) as channel:
            say = channel.unary_unary(
                "/bench.Echo/Say", request_serializer=_same, response_deserializer=_same
            )
            say(PAYLOAD, timeout=10)  # connected before the clock matters
            while time.monotonic() < deadline:
                try:
                    if say(PAYLOAD, timeout=10) == PAYLOAD:
                        done[index] += 1
                    else:
                        failed[index] += 1
                except grpc.RpcError:
                    failed[index] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / (time.monotonic() - started), sum(failed)


def _start_profiles(pids: list[int], args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    """With ``--profile DIR``: py-spy (raw, 200 Hz) on each sidecar for the measured loop."""
    if args.profile is None:
        return []
    args.profile.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    names = ["gateway", *(f"sidecar{number}" for number in range(1, len(pids)))]
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(pid),
                "-d",
                f"{args.duration:g}",
                "-r",
                "200",
                "-f",
                "raw",
                "--nonblocking",
                "-o",
                str(args.profile / f"{name}.raw"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in zip(names, pids, strict=True)
    ]


def run_round(root: Path, args: argparse.Namespace) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(dir=root))
    app = directory / "echo_server.py"
    app.write_text(SERVER_APP)
    meshfile = directory / "Meshfile.py"
    meshfile.write_text(MESHFILE.format(run=f"{sys.executable} {app}"))
    with Servers() as servers:
        port = free_port()
        servers.start(
            name="direct grpc server",
            argv=[sys.executable, str(app)],
            cwd=directory,
            log_path=directory / "direct.log",
            env={**os.environ, "PORT": str(port)},
        ).wait_for_port(port)
        direct, _ = call_loop(f"127.0.0.1:{port}", threads=args.threads, duration=args.duration)
    with Servers() as servers:
        up = start_mesh(servers, meshfile, env=dict(os.environ))
        status = wait_all_ready(up, directory, expected_instances=1)
        gateway = status["gateways"][0]
        address = str(gateway["url"]).removeprefix("http://").rstrip("/")
        sidecars = [int(gateway["pid"])] + [
            int(record["sidecar_pid"])
            for service in status["services"]
            for record in service["instances"]
        ]
        call_loop(address, threads=args.threads, duration=1.0)  # warm-up
        trees = [ProcessTree.of(pid) for pid in sidecars]
        before = [tree.cpu_seconds() for tree in trees]
        spies = _start_profiles(sidecars, args)
        rate, failed = call_loop(address, threads=args.threads, duration=args.duration)
        for spy in spies:
            spy.wait()
        spent = [tree.cpu_seconds() - start for tree, start in zip(trees, before, strict=True)]
    calls = max(rate * args.duration, 1.0)
    return {
        "direct_calls_per_s": direct,
        "mesh_calls_per_s": rate,
        "mesh_failures": failed,
        "gateway_cpu_ms_per_call": 1000 * spent[0] / calls,
        "sidecar_cpu_ms_per_call": 1000 * spent[1] / calls,
        "load_average": os.getloadavg()[0],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="py-spy raw profiles of the sidecars here")
    args = parser.parse_args(argv)
    samples = []
    with tempfile.TemporaryDirectory(prefix="meshkit-grpc-") as root:
        for number in range(1, args.rounds + 1):
            print(f"round {number}/{args.rounds} ...", flush=True)
            samples.append(run_round(Path(root), args))
    medians = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    print(
        f"gRPC unary, {args.threads} client threads, 64 B each way, medians of {args.rounds} "
        f"round(s) of {args.duration:g} s:\n"
        f"  direct  {medians['direct_calls_per_s']:8,.0f} calls/s\n"
        f"  meshkit {medians['mesh_calls_per_s']:8,.0f} calls/s "
        f"({medians['mesh_failures']:.0f} failed); CPU ms per call: gateway "
        f"{medians['gateway_cpu_ms_per_call']:.3f}, sidecar {medians['sidecar_cpu_ms_per_call']:.3f}; "
        f"load average {medians['load_average']:.1f}"
    )
    if args.json:
        settings = {key: str(v) if isinstance(v, Path) else v for key, v in vars(args).items()}
        result = {"settings": settings, "samples": samples, "medians": medians}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
