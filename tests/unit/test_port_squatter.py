"""A port squatter: another process listening on an instance's ``$PORT`` is named, with its
pid and command; the instance's own listening socket is not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from meshkit.runtime.ports import port_squatter

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux's /proc")

SQUATTER = "import socket,sys,time; s=socket.create_server(('127.0.0.1', int(sys.argv[1]))); print('up', flush=True); time.sleep(60)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_instances_own_listener_is_no_squatter() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert port_squatter(port, [os.getpid()]) is None


def test_nothing_listening_is_no_squatter() -> None:
    assert port_squatter(free_port(), [os.getpid()]) is None


def test_another_process_on_the_port_is_named_with_its_pid_and_command() -> None:
    port = free_port()
    squatter = subprocess.Popen([sys.executable, "-c", SQUATTER, str(port)], stdout=subprocess.PIPE)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == b"up\n"
        found = port_squatter(port, [os.getpid()])
        assert found is not None
        assert f"port {port} is held by pid {squatter.pid} (" in found
        assert "not by this instance's processes" in found
        assert port_squatter(port, [squatter.pid]) is None  # its own port
    finally:
        squatter.kill()
        squatter.communicate()
