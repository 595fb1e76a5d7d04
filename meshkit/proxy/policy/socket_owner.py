"""Who owns the other end of a loopback TCP connection, as the kernel says (pure codecs).

For a connection accepted on ``local`` from ``peer``, the connecting socket is
the one whose own address is ``peer`` and whose remote address is ``local``;
the kernel records the user that created it.  Two ways to ask, both encoded
and decoded here without I/O:

* **sock_diag** (netlink, ``NETLINK_SOCK_DIAG``): ``diag_request`` asks for
  exactly that socket (``SOCK_DIAG_BY_FAMILY`` with the 4-tuple, no dump) and
  ``diag_uid`` reads ``idiag_uid`` from the answer.  The kernel looks the
  socket up in its hash table, so the cost does not grow with the number of
  sockets on the machine (about 20 µs per connection).
* **the socket table** ``/proc/net/tcp[6]`` (``owner_uid``), the fallback
  where netlink is refused: one row per socket, ``sl local_address
  rem_address st ... uid``, addresses as the kernel prints them.  Reading it
  makes the kernel print every socket of the namespace, which costs
  milliseconds on a busy machine.
"""

from __future__ import annotations

import ipaddress
import struct

SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
IPPROTO_TCP = 6
ALL_STATES = 0xFFFFFFFF
NO_COOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_UID_AT = _HEADER.size + 4 + 48 + 12  # inet_diag_msg: 4 bytes, sockid, expires/rqueue/wqueue
UID_COLUMN = 7  # sl, local_address, rem_address, st, tx:rx, tr:tm, retrnsmt, uid


def _diag_address(host: str) -> bytes:
    return ipaddress.ip_address(host).packed.ljust(16, b"\0")


def diag_request(
    family: int, *, peer: tuple[str, int], local: tuple[str, int], sequence: int = 1
) -> bytes:
    """The netlink message asking for the TCP socket at ``peer`` connected to ``local``."""
    sockid = (
        struct.pack("!HH", peer[1], local[1])
        + _diag_address(peer[0])
        + _diag_address(local[0])
        + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE)
    )
    body = struct.pack("=BBBBI", family, IPPROTO_TCP, 0, 0, ALL_STATES) + sockid
    header = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, sequence, 0)
    return header + body


def diag_uid(answer: bytes) -> int | None:
    """The owner's uid in the kernel's answer; None when it found no such socket."""
    if len(answer) < _HEADER.size:
        return None
    _, kind, _, _, _ = _HEADER.unpack_from(answer)
    if kind != SOCK_DIAG_BY_FAMILY or len(answer) < _UID_AT + 4:
        return None  # NLMSG_ERROR: ENOENT, the socket is gone (or was never there)
    uid: int = struct.unpack_from("=I", answer, _UID_AT)[0]
    return uid


def kernel_address(host: str, port: int) -> str:
    """``host:port`` as ``/proc/net/tcp[6]`` prints it (``127.0.0.1:8080`` -> ``0100007F:1F90``)."""
    packed = ipaddress.ip_address(host).packed
    words = (packed[index : index + 4] for index in range(0, len(packed), 4))
    text = "".join(word[::-1].hex().upper() for word in words)
    return f"{text}:{port:04X}"


def owner_uid(table: str, *, peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The uid owning the socket at ``peer`` connected to ``local`` in ``/proc/net/tcp[6]`` text."""
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
