"""Free TCP ports on 127.0.0.1 for apps, never the same one twice in a run; the gateway's.

An app's ``$PORT`` (and a gateway port 0) is chosen here but bound later by
another process, so it must not be a port the kernel may hand out meanwhile:
every sidecar binds its inbound, outbound and admin ports with port 0, and
every outgoing connection takes a local port, all from the kernel's
ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``).  ``app_port``
therefore picks a free port from the ``APP_PORT_SPAN`` ports just below that
range (above it when the range starts too low), so an app port never
collides with a sidecar's.  The allocator remembers every port it handed out
so two instances of one run never share one, even if the first has not bound
it yet.  A port another process took while its app was down is replaced at
the next start (``InstanceRunner``), not retried forever.

The gateway keeps its address for the whole run: ``GatewayPorts.pin`` turns a
gateway port 0 (``--gateway-port 0``) into a port chosen once, so a restarted
gateway sidecar, or one after a reload, binds the same port again.
``port_in_use_message`` says, before anything starts, that a gateway port is
taken and by whom (``/proc/net/tcp`` and the ``/proc/*/fd`` holding it).
"""

from __future__ import annotations

import errno
import os
import random
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from meshkit.dsl.spec import MeshSpec

LOOPBACK = "127.0.0.1"


def ephemeral_port(host: str = LOOPBACK) -> int:
    """A port the OS considers free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
APP_PORT_SPAN = 8192
LOWEST_APP_PORT = 1024


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (first, last), Linux's default if unreadable."""
    try:
        first, last = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return first, last


def app_port_range(ephemeral: tuple[int, int]) -> range | None:
    """Where app ports come from: ``APP_PORT_SPAN`` ports next to the ephemeral range."""
    first, last = ephemeral
    if first - APP_PORT_SPAN >= LOWEST_APP_PORT:
        return range(first - APP_PORT_SPAN, first)
    if last + APP_PORT_SPAN <= 65535:
        return range(last + 1, last + 1 + APP_PORT_SPAN)
    return None


def app_port(
    *, ephemeral: tuple[int, int] | None = None, rng: random.Random | None = None
) -> int:
    """A port free on 127.0.0.1 now and outside the ephemeral range (if there is room)."""
    ports = app_port_range(ephemeral_range() if ephemeral is None else ephemeral)
    if ports is not None:
        pick = rng or random
        for _ in range(100):
            port = pick.choice(ports)
            if is_free(LOOPBACK, port):
                return port
    return ephemeral_port()


class PortAllocator:
    """Hands out distinct free ports; ``probe`` is injectable for tests."""

    def __init__(self, *, probe: Callable[[], int] = app_port, attempts: int = 100) -> None:
        self._probe = probe
        self._attempts = attempts
        self._given: set[int] = set()

    def allocate(self) -> int:
        for _ in range(self._attempts):
            port = self._probe()
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError(f"could not find a free port on {LOOPBACK} in {self._attempts} attempts")

    def release(self, port: int) -> None:
        """Let ``port`` be handed out again (its instance is gone for good)."""
        self._given.discard(port)

    @property
    def allocated(self) -> frozenset[int]:
        return frozenset(self._given)


class GatewayPorts:
    """The gateway ports of one run: a 0 in the spec becomes a port chosen once."""

    def __init__(self, *, probe: Callable[[], int] = app_port) -> None:
        self._probe = probe
        self._chosen: dict[str, int] = {}

    def _concrete(self, listener: str, port: int) -> int:
        if port != 0:
            return port
        if listener not in self._chosen:
            self._chosen[listener] = self._probe()
        return self._chosen[listener]

    def pin(self, spec: MeshSpec) -> MeshSpec:
        gateway = spec.gateway
        if gateway is None:
            return spec
        tls_port = None if gateway.tls_port is None else self._concrete("tls", gateway.tls_port)
        pinned = attrs.evolve(gateway, port=self._concrete("http", gateway.port), tls_port=tls_port)
        return attrs.evolve(spec, gateway=pinned)


def port_in_use_message(spec: MeshSpec) -> str | None:
    """Why the gateway of ``spec`` cannot listen (a port already taken), None if it can."""
    gateway = spec.gateway
    if gateway is None:
        return None
    for option, port in (
        ("--gateway-port", gateway.port),
        ("--gateway-tls-port", gateway.tls_port),
    ):
        if port is None or port == 0 or is_free(gateway.host, port):
            continue
        holder = port_holder(port)
        held = f" by {holder}" if holder else ""
        where = "" if gateway.origin.line == 0 else f"{gateway.origin}: "
        return (
            f"{where}the gateway's port {port} on {gateway.host} "
            f"is in use{held}; stop that or choose another port with {option} PORT "
            f"(0: any free port)"
        )
    return None


def is_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (as trio's listeners do, SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _listening_sockets() -> dict[str, int]:
    """Every listening TCP socket on this host: inode -> local port."""
    sockets: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A":
                sockets[inode] = int(local.rsplit(":", 1)[1], 16)
    return sockets


def _listening_inodes(port: int) -> set[str]:
    return {inode for inode, bound in _listening_sockets().items() if bound == port}


def _socket_inodes(pids: Iterable[int]) -> set[str]:
    """The inodes of every socket processes ``pids`` hold open."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def listening_ports(pids: Iterable[int]) -> tuple[int, ...]:
    """The TCP ports processes ``pids`` listen on, sorted."""
    sockets = _listening_sockets()
    return tuple(sorted({sockets[inode] for inode in _socket_inodes(pids) if inode in sockets}))


def port_squatter(port: int, pids: Iterable[int]) -> str | None:
    """Who else listens on ``port`` besides processes ``pids`` (a squatter taking the
    traffic meant for them), or None when only they do or nothing can tell."""
    foreign = _listening_inodes(port) - _socket_inodes(pids)
    if not foreign:
        return None
    holder = port_holder(port, inodes=foreign) or "a process meshkit cannot see"
    return (
        f"port {port} is held by {holder}, not by this instance's processes; "
        "no traffic is sent there"
    )


def port_holder(port: int, *, inodes: set[str] | None = None) -> str | None:
    """``pid 1234 (python3 -m http.server)`` for the process listening on ``port``, if knowable
    (``inodes``: only those of its listening sockets)."""
    listening = _listening_inodes(port) if inodes is None else inodes
    wanted = {f"socket:[{inode}]" for inode in listening}
    if not wanted:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
            if not any(os.readlink(entry / "fd" / fd) in wanted for fd in fds):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        return f"pid {entry.name} ({command.decode(errors='replace')[:80]})"
    return None
