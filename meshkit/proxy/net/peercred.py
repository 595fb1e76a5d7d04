"""Only the mesh's own user may enter through a sidecar's local ports (thin I/O).

The outbound, per-upstream and admin listeners are plaintext on loopback,
reachable by every local user; whoever connects enters the mesh with the app's
identity.  ``foreign_owner`` asks the kernel's socket table who owns the
connecting socket (``meshkit.proxy.policy.socket_owner``) and names the reason
to refuse one that is not this process's user.  Where there is no socket table
(not Linux) nothing can be checked, and nothing is refused.
"""

from __future__ import annotations

import os
import socket

import trio

from meshkit.proxy.policy.socket_owner import owner_uid

TABLES: dict[int, str] = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}


def _read_table(family: int) -> str | None:
    path = TABLES.get(family)
    if path is None:
        return None
    try:
        with open(path, encoding="ascii", errors="replace") as table:
            return table.read()
    except OSError:
        return None


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
    table = _read_table(sock.family)
    if table is None:
        return None
    uid = owner_uid(table, peer=(peer[0], peer[1]), local=(local[0], local[1]))
    mine = os.getuid()
    if uid == mine:
        return None
    who = "no socket in the kernel's table" if uid is None else f"uid {uid}"
    return (
        f"connection from {peer[0]}:{peer[1]} to port {local[1]} is owned by {who}, "
        f"not the mesh's user (uid {mine})"
    )
