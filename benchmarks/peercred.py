"""What the socket-owner check of the outbound, upstream and admin ports costs per connection.

    python benchmarks/peercred.py [--sizes 0,1000,5000] [--seconds 3]

For each size, that many extra loopback connections are held open (each adds
two rows to /proc/net/tcp), then:

* ``diag us``: the median time of ``foreign_owner`` (sock_diag over netlink,
  what the sidecar does) for a fresh connection; ``table us``: the same
  answer read from ``/proc/net/tcp`` (the fallback);
* ``conn/s``: new connections per second a trio server accepts, answers with
  one byte and closes, without and with the check (a client process connects
  in a loop); rounds alternate so drift spreads over both.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time

import trio

from meshkit.proxy.net.peercred import _read_table, foreign_owner

CLIENT = """
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
count, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.recv(1)
    count += 1
print(count / seconds)
"""


def hold_connections(count: int) -> list[socket.socket]:
    held: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as server:
        for _ in range(count):
            client = socket.create_connection(server.getsockname())
            accepted, _ = server.accept()
            held += [client, accepted]
    return held


async def lookup_seconds(samples: int, *, table: bool) -> float:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    times = []
    for _ in range(samples):
        client = await trio.open_tcp_stream("127.0.0.1", port)
        accepted = await listeners[0].accept()
        peer, local = accepted.socket.getpeername(), accepted.socket.getsockname()
        started = time.perf_counter()
        if table:
            assert _read_table(socket.AF_INET, peer, local) is not None
        else:
            assert foreign_owner(accepted) is None
        times.append(time.perf_counter() - started)
        await client.aclose()
        await accepted.aclose()
    await listeners[0].aclose()
    return statistics.median(times)


async def connections_per_second(*, check: bool, seconds: float) -> float:
    async def handler(stream: trio.SocketStream) -> None:
        if check and foreign_owner(stream) is not None:
            await stream.aclose()
            return
        await stream.send_all(b"!")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handler, 0)
        port = listeners[0].socket.getsockname()[1]
        result = await trio.run_process(
            [sys.executable, "-c", CLIENT, str(port), str(seconds)], capture_stdout=True
        )
        nursery.cancel_scope.cancel()
    return float(result.stdout)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0,1000,5000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'held conns':>10} {'table rows':>10} {'diag us':>8} {'table us':>9} "
        f"{'conn/s off':>11} {'conn/s on':>10}"
    )
    for size in (int(part) for part in args.sizes.split(",")):
        held = hold_connections(size)
        rows = sum(1 for _ in open("/proc/net/tcp")) - 1  # noqa: SIM115
        diag = trio.run(lambda: lookup_seconds(200, table=False))
        table = trio.run(lambda: lookup_seconds(20, table=True))
        off, on = [], []
        for _ in range(args.rounds):
            off.append(trio.run(lambda: connections_per_second(check=False, seconds=args.seconds)))
            on.append(trio.run(lambda: connections_per_second(check=True, seconds=args.seconds)))
        print(
            f"{size:>10} {rows:>10} {diag * 1e6:>8.0f} {table * 1e6:>9.0f} "
            f"{statistics.median(off):>11.0f} {statistics.median(on):>10.0f}"
        )
        for sock in held:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
