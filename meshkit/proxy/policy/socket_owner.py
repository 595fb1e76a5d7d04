"""Who owns the other end of a loopback TCP connection: a row of the kernel's socket table (pure).

Linux lists every TCP socket of the network namespace in ``/proc/net/tcp``
(IPv4) and ``/proc/net/tcp6``, one row each: ``sl local_address rem_address
st ... uid timeout inode``, addresses as the kernel prints them (the IPv4
address a little-endian 32-bit word in hex, IPv6 four such words, the port
big-endian hex).  For a connection accepted on ``local`` from ``peer``, the
connecting socket's row has ``peer`` as its local address and ``local`` as its
remote one; its ``uid`` column is the user that created the socket.

``owner_uid`` finds that row by formatting both addresses the kernel's way and
searching for the pair, so the cost is one substring search over the table, not
a parse of every row.
"""

from __future__ import annotations

import ipaddress

UID_COLUMN = 7  # sl, local_address, rem_address, st, tx:rx, tr:tm, retrnsmt, uid


def kernel_address(host: str, port: int) -> str:
    """``host:port`` as ``/proc/net/tcp[6]`` prints it (``127.0.0.1:8080`` -> ``0100007F:1F90``)."""
    packed = ipaddress.ip_address(host).packed
    words = (packed[index : index + 4] for index in range(0, len(packed), 4))
    text = "".join(word[::-1].hex().upper() for word in words)
    return f"{text}:{port:04X}"


def owner_uid(table: str, *, peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The uid owning the socket at ``peer`` connected to ``local``, or None if no row says so."""
    needle = f" {kernel_address(*peer)} {kernel_address(*local)} "
    found = table.find(needle)
    if found < 0:
        return None
    start = table.rfind("\n", 0, found) + 1
    end = table.find("\n", found)
    columns = table[start : None if end < 0 else end].split()
    try:
        return int(columns[UID_COLUMN])
    except (IndexError, ValueError):
        return None
