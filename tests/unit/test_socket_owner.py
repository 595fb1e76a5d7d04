"""Who owns a connecting socket: the sock_diag request and answer, sample ``/proc/net/tcp[6]``
text, and both against the real kernel."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from meshkit.proxy.net.peercred import socket_owner
from meshkit.proxy.policy.socket_owner import diag_request, diag_uid, kernel_address, owner_uid

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 31340 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 31339 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:D432 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1002        0 31341 1 0000000000000000 20 4 30 10 -1
"""

TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:B7A2 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1
   1: 00000000000000000000000001000000:B7A2 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000   500        0 2 1 0 20 4 30 10 -1
"""


def test_addresses_are_written_as_the_kernel_writes_them() -> None:
    assert kernel_address("127.0.0.1", 8080) == "0100007F:1F90"
    assert kernel_address("::1", 8080) == "00000000000000000000000001000000:1F90"
    assert kernel_address("10.1.2.3", 1) == "0302010A:0001"


def test_the_connecting_sockets_row_names_its_owner_not_the_accepted_one() -> None:
    local = ("127.0.0.1", 8080)
    assert owner_uid(TCP, peer=("127.0.0.1", 0xD431), local=local) == 1001
    assert owner_uid(TCP, peer=("127.0.0.1", 0xD432), local=local) == 1002
    assert owner_uid(TCP6, peer=("::1", 0xB7A2), local=("::1", 8080)) == 500


def test_no_row_is_none() -> None:
    assert owner_uid(TCP, peer=("127.0.0.1", 0xD433), local=("127.0.0.1", 8080)) is None
    assert owner_uid("", peer=("127.0.0.1", 1), local=("127.0.0.1", 2)) is None


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux's /proc/net/tcp")
def test_a_real_connection_is_found_in_the_real_table() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, peer = server.accept()
        with client, accepted, open("/proc/net/tcp") as table:
            found = owner_uid(table.read(), peer=peer, local=accepted.getsockname())
    assert found == os.getuid()


def test_the_diag_request_names_the_connecting_socket_by_its_four_tuple() -> None:
    request = diag_request(socket.AF_INET, peer=("127.0.0.1", 0xD431), local=("127.0.0.1", 8080))
    length, kind, flags = struct.unpack_from("=IHH", request)
    assert (length, kind, flags) == (len(request), 20, 1) and length == 16 + 56
    family, protocol = request[16], request[17]
    assert (family, protocol) == (socket.AF_INET, socket.IPPROTO_TCP)
    sport, dport = struct.unpack_from("!HH", request, 24)
    assert (sport, dport) == (0xD431, 8080)
    assert request[28:32] == bytes([127, 0, 0, 1]) and request[44:48] == bytes([127, 0, 0, 1])
    v6 = diag_request(socket.AF_INET6, peer=("::1", 1), local=("::1", 2))
    assert v6[28:44] == bytes(15) + b"\x01"


def test_the_diag_answer_gives_the_uid_and_an_error_gives_none() -> None:
    message = bytes(4) + bytes(48) + struct.pack("=IIIII", 0, 0, 0, 1001, 31339)
    answer = struct.pack("=IHHII", 16 + len(message), 20, 0, 1, 0) + message
    assert diag_uid(answer) == 1001
    enoent = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -2) + bytes(16)
    assert diag_uid(enoent) is None
    assert diag_uid(b"") is None


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux")
@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_kernel_names_this_user_as_the_owner(family: int, host: str) -> None:
    with socket.create_server((host, 0), family=family) as server:
        client = socket.create_connection(server.getsockname()[:2])
        accepted, peer = server.accept()
        with client, accepted:
            local = accepted.getsockname()[:2]
            assert socket_owner(family, peer[:2], local) == os.getuid()
            assert socket_owner(family, (host, 1), local) is None
