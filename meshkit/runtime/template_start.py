"""Start the sidecar template (``meshkit.proxy.template``) before anything else is imported.

``start_template`` spawns it (its own session, an owner tag, one end of a
socket pair) without an event loop; ``meshkit.runtime.template`` supervises
it from then on.  Standard library, attrs and ``meshkit.api`` only: ``meshkit
up`` calls it before importing its control plane (``meshkit.cli.early``), so
that the template's imports overlap the control plane's.
"""

from __future__ import annotations

import os
import socket
import sys

import attrs

from meshkit.api.template import SIDECAR_ENV, TEMPLATE_FD_ENV, padded_owner
from meshkit.runtime import lineage
from meshkit.runtime.lineage import Owners

TEMPLATE_ARGV: tuple[str, ...] = (sys.executable, "-m", "meshkit.proxy.template")


@attrs.frozen(kw_only=True)
class StartedTemplate:
    """A template process just started, not yet supervised: its pid, owner tag and socket."""

    pid: int
    tag: str
    owners: Owners
    link: socket.socket

    def abandon(self) -> None:
        """Close its socket: the template exits at the end of it (nobody supervised it)."""
        self.link.close()


def start_template(owners: Owners) -> StartedTemplate | None:
    """Start the template at once, without an event loop (so that its imports overlap the
    control plane's own start); None where it cannot start.

    Its own session, an owner tag from ``owners`` with room after it, stderr on
    this process's; ``SidecarTemplate.adopt`` supervises it.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    tag = owners.next_tag()
    env = {
        **os.environ,
        **SIDECAR_ENV,
        TEMPLATE_FD_ENV: str(theirs.fileno()),
        lineage.OWNER_ENV: padded_owner(tag),
    }
    try:
        os.set_inheritable(theirs.fileno(), True)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            pid = os.posix_spawn(
                TEMPLATE_ARGV[0],
                list(TEMPLATE_ARGV),
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, null, 0)],
                setsid=True,
            )
        finally:
            os.close(null)
    except OSError as exc:
        ours.close()
        sys.stderr.write(f"meshkit: no sidecar template ({exc}); sidecars start by spawn\n")
        return None
    finally:
        theirs.close()
    return StartedTemplate(pid=pid, tag=tag, owners=owners, link=ours)
