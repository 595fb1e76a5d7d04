"""``python -m meshkit.proxy.template``: the process sidecars and evaluators are forked from.

Started by the control plane with one end of a Unix stream socket
(``MESHKIT_TEMPLATE_FD``).  It imports everything a sidecar runs and the
Meshfile's evaluator child (``meshkit.dsl.evaluate.child``, imported by name
from ``meshkit.api.template.PROGRAMS``: the proxy's own code never uses the
DSL), generates the config converter's functions (``prepare_hooks`` and each
program's ``prepare``), rehearses a sidecar's start and first requests
(``meshkit.proxy.rehearsal``: what every sidecar would otherwise do once and
copy the pages for), freezes the garbage collector's view of those objects
(``gc.freeze``: the collector no longer writes to their pages, so the forks
keep sharing them), fills the holes of its C heap (``fill_heap_holes``: a
fork's new objects then take fresh pages instead of shared ones), and then
serves fork requests one at a time (``meshkit.api.template``), blocking on its
socket: no thread ever runs here, and no event loop once the rehearsal's
``trio.run`` has returned, so a fork copies nothing half-done.

For each request it forks a child that starts a new session, forks the
program and exits: the program, a session leader whose pid is its process
group, is adopted by the control plane (a child subreaper), which waits for
it as for any spawn.  The program then takes the request's environment,
working directory and descriptors (a sidecar: the log file on stdout and
stderr, the bootstrap-token pipe at the number its environment names; an
evaluator: its three pipes), writes its owner tag over the template's in
``/proc/<pid>/environ``, and runs its module's ``main``; an evaluator also
gets the ``sys.path`` its spawn would have (``spawned_sys_path``).  A
sidecar's key is made after the fork, by the sidecar, as ever: nothing secret
exists in the template, OpenSSL reseeds its generators in a forked child, and
the child mixes fresh ``os.urandom`` bytes into the ``ssl`` module's
generator besides.

What a program's modules read from the environment when they are imported
(``MESHKIT_SIDECAR_PROTOCOL``), the interpreter's settings (``PYTHONMALLOC``,
the hash seed) are the template's, that is the control plane's when it
started.  The template exits when the control plane closes the socket.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import os
import signal
import socket
import ssl
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meshkit.api.template import (
    EVALUATOR,
    PROGRAMS,
    SIDECAR,
    TEMPLATE_FD_ENV,
    ForkRequest,
    FrameReader,
    TemplateProtocolError,
    encode,
    owner_overwrite,
)
from meshkit.proxy import __main__ as sidecar_main
from meshkit.proxy.memory import fill_heap_holes
from meshkit.proxy.rehearsal import rehearse
from meshkit.proxy.wire import prepare_hooks

MAX_FDS = 8
# What a sidecar imports only once it runs (cryptography's backend, loading its
# key and certificates; the IDNA codec, for host names): imported here instead.
RUN_TIME_IMPORTS = ("cryptography.hazmat.backends.openssl.backend", "encodings.idna")
RECEIVE_SIZE = 65536
# Field numbers of env_start / env_end in /proc/<pid>/stat, counted after the
# command name's closing parenthesis (field 3 is the first).
ENV_START_FIELD = 50 - 3
ENV_END_FIELD = 51 - 3
# The template's own start: what a spawned evaluator's sys.path differs from.
START_PATH = tuple(sys.path)
START_CWD = os.getcwd()
START_PYTHONPATH = os.environ.get("PYTHONPATH", "")


def main() -> int:
    try:
        fd = int(os.environ.pop(TEMPLATE_FD_ENV))
    except (KeyError, ValueError):
        sys.stderr.write(f"meshkit template: {TEMPLATE_FD_ENV} must name the socket's fd\n")
        return 2
    for name in RUN_TIME_IMPORTS:
        importlib.import_module(name)
    prepare_hooks()
    for name in PROGRAMS.values():
        prepare = getattr(importlib.import_module(name), "prepare", None)
        if prepare is not None:
            prepare()
    try:
        rehearse()
    except Exception as exc:  # the forks work without it, only copying more of this process
        sys.stderr.write(f"meshkit template: the sidecar rehearsal failed ({exc!r}); forks go on\n")
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        sys.stderr.write(f"meshkit template: {threads} threads run here; refusing to fork\n")
        return 1
    gc.collect()
    gc.freeze()
    fill_heap_holes()
    with socket.socket(fileno=fd) as link:
        serve(link)
    return 0


def serve(link: socket.socket) -> None:
    """Answer fork requests until the control plane closes the socket."""
    reader = FrameReader()
    received: list[int] = []
    while True:
        data, fds, _flags, _address = socket.recv_fds(link, RECEIVE_SIZE, MAX_FDS)
        received.extend(fds)
        if not data:
            return
        try:
            messages = reader.feed(data)
        except TemplateProtocolError as exc:
            sys.stderr.write(f"meshkit template: {exc}\n")
            return
        for message in messages:
            link.sendall(encode(answer(message, received)))
            for passed in received:
                os.close(passed)
            received = []


def answer(message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    try:
        request = ForkRequest.from_json(message)
        if len(fds) != len(request.fds):
            raise TemplateProtocolError(
                f"{len(request.fds)} descriptors announced, {len(fds)} received"
            )
        owner = owner_slot(*request.owner)
        return {"pid": fork_program(request, fds, owner)}
    except (TemplateProtocolError, OSError) as exc:
        return {"error": str(exc)}


OwnerSlot = tuple[int, bytes]  # where in memory to write, and what


def fork_program(request: ForkRequest, fds: list[int], owner: OwnerSlot) -> int:
    """Fork the program as a grandchild in its own session; its pid."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            if os.fork() == 0:
                os.setsid()
                os.write(write_end, str(os.getpid()).encode())
                os.close(write_end)
                os._exit(become_program(request, fds, owner))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            text = pipe.read()
    finally:
        os.waitpid(child, 0)
    if not text.isdigit():
        raise OSError(f"the forked {request.program} did not start")
    return int(text)


def become_program(request: ForkRequest, fds: list[int], owner: OwnerSlot) -> int:
    """In the fork: take the spawn's place, run the program; its exit status."""
    try:
        place_descriptors(request.fds, fds, output=request.output)
        address, value = owner
        with open("/proc/self/mem", "r+b", buffering=0) as memory:
            memory.seek(address)
            memory.write(value)
        os.environ.clear()
        os.environ.update(request.env)
        if request.cwd is not None:
            os.chdir(request.cwd)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ssl.RAND_add(os.urandom(32), 32.0)
        if request.program == SIDECAR:
            sys.argv = ["python -m meshkit.proxy", *request.args]
            return sidecar_main.main(list(request.args))
        program = importlib.import_module(PROGRAMS[request.program])
        sys.argv = [str(program.__file__), *request.args]
        if request.program == EVALUATOR:
            sys.path[:] = spawned_sys_path(os.getcwd(), request.env)
        code: int = program.main(list(request.args))
        return code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the fork must end here, never back in the template's loop
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def place_descriptors(targets: tuple[int, ...], fds: list[int], *, output: bool) -> None:
    """Put each passed descriptor at its target number (with ``output``, the first one
    on stdout and stderr), stdin on /dev/null unless it is a target, and close every
    other descriptor."""
    floor = max([*targets, *fds, 2]) + 1
    # Out of the way first, so that no target number overwrites a descriptor still needed.
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in fds]
    for fd, target in zip(moved, targets, strict=True):
        os.dup2(fd, target)
    if output and targets:
        os.dup2(targets[0], 1)
        os.dup2(targets[0], 2)
    if 0 not in targets:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
    keep = {0, 1, 2, *targets[1:]} if output else {0, 1, 2, *targets}
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                continue


def spawned_sys_path(cwd: str, env: Mapping[str, str]) -> list[str]:
    """``sys.path`` as ``python -m`` started in ``cwd`` with ``env`` has it: ``cwd`` first
    (unless ``PYTHONSAFEPATH``), then ``env``'s ``PYTHONPATH``, then the template's own
    path without its first entry and its ``PYTHONPATH``; duplicates dropped as ``site`` does."""
    skip = {_absolute(entry, START_CWD) for entry in START_PYTHONPATH.split(os.pathsep) if entry}
    given = env.get("PYTHONPATH", "").split(os.pathsep)
    theirs = [_absolute(entry, cwd) for entry in given if entry]
    ours = [entry for entry in START_PATH[0 if sys.flags.safe_path else 1 :] if entry not in skip]
    path: list[str] = [] if env.get("PYTHONSAFEPATH") else [cwd]
    seen: set[str] = set()
    for entry in [*theirs, *ours]:
        key = os.path.normcase(os.path.abspath(entry))
        if key not in seen:
            seen.add(key)
            path.append(entry)
    return path


def _absolute(entry: str, cwd: str) -> str:
    return os.path.normpath(os.path.join(cwd, entry))


def owner_slot(name: str, tag: str) -> OwnerSlot:
    """Where this process's initial environment holds ``name``'s value, and the bytes that
    make it read ``tag`` (``TemplateProtocolError`` if it is missing or too short).

    ``/proc/<pid>/environ`` shows the environment as the process was exec'd
    (the template's), not ``os.environ``; the guardian and the supervisor find
    a spawn's processes by the owner tag there, so the fork writes its own.
    """
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    start, end = int(fields[ENV_START_FIELD]), int(fields[ENV_END_FIELD])
    with open("/proc/self/mem", "rb", buffering=0) as memory:
        memory.seek(start)
        block = b"\0" + memory.read(end - start)
    needle = b"\0" + name.encode() + b"="
    found = block.find(needle)
    if not name or found < 0:
        raise TemplateProtocolError(f"{name!r} is not in the template's environment")
    value_at = found + len(needle)
    value_end = block.find(b"\0", value_at)
    value_end = len(block) if value_end < 0 else value_end
    # ``block`` starts with one extra byte, hence the - 1.
    return start + value_at - 1, owner_overwrite(block[value_at:value_end], tag)


if __name__ == "__main__":
    sys.exit(main())
