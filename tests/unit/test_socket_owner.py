"""The socket table's row of a connecting socket, from sample ``/proc/net/tcp[6]`` text."""

from __future__ import annotations

import os
import socket

import pytest

from meshkit.proxy.policy.socket_owner import kernel_address, owner_uid

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
