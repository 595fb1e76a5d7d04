"""Only the mesh's own user may enter through a sidecar's local ports (thin I/O).

The outbound, per-upstream and admin listeners are plaintext on loopback,
reachable by every local user; whoever connects enters the mesh with the app's
identity.  ``foreign_owner`` asks the kernel who owns the connecting socket
(``meshkit.proxy.policy.socket_owner``: sock_diag over netlink, else the
``/proc/net/tcp[6]`` table) and names the reason to refuse one that is not
this process's user.  Where the kernel offers neither (not Linux) nothing can
be checked, and nothing is refused.
"""

from __future__ import annotations

import os
import socket

import trio

from meshkit.proxy.policy.socket_owner import diag_request, diag_uid, owner_uid

TABLES: dict[int, str] = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}
NETLINK_SOCK_DIAG = 4
Address = tuple[str, int]


class _Unknowable(Exception):
    """The kernel offers no way to ask (not Linux)."""


def _ask_netlink(family: int, peer: Address, local: Address) -> int | None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(1.0)
        diag.send(diag_request(family, peer=peer, local=local))
        return diag_uid(diag.recv(65536))


def _read_table(family: int, peer: Address, local: Address) -> int | None:
    try:
        with open(TABLES[family], encoding="ascii", errors="replace") as table:
            return owner_uid(table.read(), peer=peer, local=local)
    except (OSError, KeyError):
        raise _Unknowable from None


def socket_owner(family: int, peer: Address, local: Address) -> int | None:
    """The uid owning the socket at ``peer`` connected to ``local``; None if none is found.

    Raises ``_Unknowable`` where the kernel cannot be asked.
    """
    if hasattr(socket, "AF_NETLINK"):
        try:
            return _ask_netlink(family, peer, local)
        except OSError:
            pass  # netlink refused (a sandbox): the table says the same, more slowly
    return _read_table(family, peer, local)


def foreign_owner(stream: trio.abc.Stream) -> str | None:
    """Why a connection must be refused (its socket is not this user's), or None to serve it."""
    if not isinstance(stream, trio.SocketStream):
        return None
    sock = stream.socket
    try:
        peer = sock.getpeername()
        local = sock.getsockname()
    except OSError:
        return "the connection closed before its owner was known"
    try:
        uid = socket_owner(sock.family, (peer[0], peer[1]), (local[0], local[1]))
    except _Unknowable:
        return None
    mine = os.getuid()
    if uid == mine:
        return None
    who = "no socket the kernel knows" if uid is None else f"uid {uid}"
    return (
        f"connection from {peer[0]}:{peer[1]} to port {local[1]} is owned by {who}, "
        f"not the mesh's user (uid {mine})"
    )
