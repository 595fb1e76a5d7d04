"""What the control plane and the sidecar template say to each other; sans-I/O.

The template (``python -m meshkit.proxy.template``) is a child of the control
plane that has imported everything a sidecar runs and forks one on request.
They share one Unix stream socket.  Every message is a frame: 4 bytes of
big-endian length, then that many bytes of a JSON object.

* request (control plane -> template): ``ForkRequest``; the descriptors it
  lists in ``fds`` (a sidecar's log file and bootstrap-token pipe, an
  evaluator's stdin, stdout and stderr pipes) travel with its first byte as
  ``SCM_RIGHTS``, in that order;
* answer (template -> control plane), one per request, in order:
  ``{"pid": <pid>}`` once the program runs in its own session (its pid is its
  process group), or ``{"error": <why>}`` when it could not be forked (the
  control plane then spawns it the ordinary way).

The program is a sidecar (``python -m meshkit.proxy``) or the Meshfile's
evaluator child (``python -m meshkit.dsl.evaluate.child``).  It is a
grandchild of the template: the template forks, the child forks the program
and exits, so the program is adopted by the control plane (a child
subreaper), which waits for it and reads its true exit status.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeGuard

import attrs

HEADER = struct.Struct(">I")

SIDECAR_ENV: Mapping[str, str] = MappingProxyType(
    {"PYTHONUNBUFFERED": "1", "PYTHONMALLOC": "malloc"}
)
"""What a sidecar's interpreter runs with, forked from the template or spawned.

``PYTHONMALLOC=malloc``: Python's object allocator keeps a 1 MiB arena while
one object lives in it, so after a burst (a rapid-reset flood grew the
gateway by 40 MiB) a few surviving objects pin most of the peak; with every
allocation in the C heap, ``meshkit.proxy.memory`` hands the free pages back
once the sidecar is quiet.
"""
MAX_FRAME = 1 << 20  # an environment and an argv; anything bigger is a broken peer
TEMPLATE_FD_ENV = "MESHKIT_TEMPLATE_FD"  # the template's end of the socket
# The template's own owner tag is followed by this many filler characters in
# its environment, so that a forked sidecar can write its own (longer) tag over
# it in place, where /proc/<pid>/environ shows it.
OWNER_ROOM = 24
OWNER_FILLER = "~"
SIDECAR = "sidecar"
EVALUATOR = "evaluator"
# What a fork request may run: the module whose ``main(argv)`` the fork calls.
PROGRAMS: Mapping[str, str] = MappingProxyType(
    {SIDECAR: "meshkit.proxy.__main__", EVALUATOR: "meshkit.dsl.evaluate.child"}
)


class Child(Protocol):
    """What a spawn is to whoever waits for it: a ``trio.Process``, or a program forked
    from the template (``meshkit.runtime.template``); returncode < 0: killed by that signal."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class TemplateProtocolError(Exception):
    """A frame that is not a well-formed message of this protocol."""


@attrs.frozen(kw_only=True)
class ForkRequest:
    """Fork one ``program`` (``PROGRAMS``) with ``args``, as a spawn would run it.

    ``fds`` are the descriptor numbers the program must find open, in the order
    the descriptors travel; stdout and stderr are the first of them when
    ``output`` is set, stdin is /dev/null unless 0 is among them.  ``owner``
    names the variable and value of its owner tag.
    """

    args: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None
    fds: tuple[int, ...] = ()
    output: bool = False
    owner: tuple[str, str] = ("", "")
    program: str = SIDECAR

    def to_json(self) -> dict[str, Any]:
        return {
            "args": list(self.args),
            "env": dict(self.env),
            "cwd": self.cwd,
            "fds": list(self.fds),
            "output": self.output,
            "owner": list(self.owner),
            "program": self.program,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ForkRequest:
        """The request ``raw`` describes, or ``TemplateProtocolError`` naming what is wrong."""
        args, env, cwd = raw.get("args"), raw.get("env"), raw.get("cwd")
        fds, output, owner = raw.get("fds"), raw.get("output"), raw.get("owner")
        program = raw.get("program", SIDECAR)
        if not _strings(args):
            raise TemplateProtocolError("a fork request's args must be a list of strings")
        if not (isinstance(env, dict) and _strings(list(env)) and _strings(list(env.values()))):
            raise TemplateProtocolError("a fork request's env must map strings to strings")
        if not (cwd is None or isinstance(cwd, str)):
            raise TemplateProtocolError("a fork request's cwd must be a string or null")
        if not (isinstance(fds, list) and all(_descriptor(fd) for fd in fds)):
            raise TemplateProtocolError("a fork request's fds must be descriptor numbers")
        if not (isinstance(output, bool) and _strings(owner) and len(owner) == 2):
            raise TemplateProtocolError("a fork request needs output (bool) and owner [name, tag]")
        if not (isinstance(program, str) and program in PROGRAMS):
            raise TemplateProtocolError(f"a fork request's program must be one of {list(PROGRAMS)}")
        return cls(
            args=tuple(args),
            env=env,
            cwd=cwd,
            fds=tuple(fds),
            output=output,
            owner=(owner[0], owner[1]),
            program=program,
        )


def _strings(values: object) -> TypeGuard[list[str]]:
    return isinstance(values, list) and all(isinstance(value, str) for value in values)


def _descriptor(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def encode(message: Mapping[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise TemplateProtocolError(f"a frame of {len(body)} bytes (at most {MAX_FRAME})")
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Bytes in, messages out: ``feed`` what arrived, then take each whole frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages: list[dict[str, Any]] = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise TemplateProtocolError(f"a frame of {length} bytes (at most {MAX_FRAME})")
            if len(self._buffer) < HEADER.size + length:
                break
            body = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            try:
                message = json.loads(body)
            except ValueError as exc:
                raise TemplateProtocolError(f"a frame that is not JSON: {exc}") from None
            if not isinstance(message, dict):
                raise TemplateProtocolError("a frame that is not a JSON object")
            messages.append(message)
        return messages

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame (0: the stream may end here)."""
        return len(self._buffer)


def fork_answer(raw: Mapping[str, Any]) -> int | str:
    """The pid of a forked sidecar, or the template's reason why it forked none."""
    pid, error = raw.get("pid"), raw.get("error")
    if isinstance(pid, int) and not isinstance(pid, bool) and pid > 1:
        return pid
    if isinstance(error, str):
        return error
    raise TemplateProtocolError(f"an answer that is neither a pid nor an error: {dict(raw)}")


def padded_owner(tag: str) -> str:
    """The template's owner-tag value: its tag, then the room a sidecar's tag overwrites."""
    return tag + OWNER_FILLER * OWNER_ROOM


def owner_overwrite(current: bytes, new_tag: str) -> bytes:
    """What to write over ``current`` (a padded owner value) so that it reads ``new_tag``.

    NUL bytes fill the rest: ``/proc/<pid>/environ`` then shows the new tag
    and a few empty entries.  Raises ``TemplateProtocolError`` if it does not fit.
    """
    new = new_tag.encode()
    if len(new) > len(current) or b"\0" in new or not new:
        raise TemplateProtocolError(
            f"the owner tag {new_tag!r} does not fit in {len(current)} bytes"
        )
    return new + b"\0" * (len(current) - len(new))
