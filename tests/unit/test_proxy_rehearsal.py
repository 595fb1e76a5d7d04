"""The template's rehearsal of a sidecar (``meshkit.proxy.rehearsal``): real, quiet, gone after."""

from __future__ import annotations

import json
import subprocess
import sys

from meshkit.api.template import SIDECAR_ENV

SCRIPT = """
import json, os, sys
from meshkit.proxy.rehearsal import rehearse
fds = sorted(os.listdir("/proc/self/fd"))
rehearse()
rehearse()  # a second one too: nothing of the first is in its way
after = sorted(os.listdir("/proc/self/fd"))
keys = []
for _ in range(2):  # keys made in forks of a rehearsed process are their own
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        from cryptography.hazmat.primitives import serialization
        from meshkit.ca.workload import generate_key
        der = generate_key().private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        os.write(write_end, der.hex().encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        keys.append(pipe.read())
    os.wait()
json.dump({"fds": [fds, after], "threads": len(os.listdir("/proc/self/task")), "keys": keys},
          sys.stdout)
"""


def test_a_rehearsal_serves_through_two_sidecars_and_leaves_nothing_behind() -> None:
    """``rehearse`` raises unless every request came back 200 through the caller's outbound
    and the callee's inbound listener over mTLS; it writes nothing (no log, no access
    line), leaves no descriptor or thread, and forks after it still make keys of their own."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**SIDECAR_ENV, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    found = json.loads(done.stdout)
    before, after = found["fds"]
    assert before == after
    assert found["threads"] == 1
    first, second = found["keys"]
    assert len(first) > 64 and first != second
