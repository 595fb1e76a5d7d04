"""Who may be answered on a listener before any route is chosen (pure).

Two refusals, each a ``LocalReply`` with a flag:

* ``FH`` (403): the request's Host is neither loopback nor a name the mesh
  declares (``ProxyConfig.allowed_hosts``), on the gateway, upstream and admin
  listeners: a web page that pointed its own name at 127.0.0.1 (DNS rebinding)
  is not answered.  The Host is the absolute-form target's authority, else the
  ``Host`` header (HTTP/2's ``:authority`` arrives as one).  The outbound
  listener needs no list: its Host must name a service of the mesh anyway, and
  inbound listeners take only mTLS.
* ``AT`` (401): an admin request without the mesh's token
  (``Authorization: Bearer``, ``meshkit.api.access``); a sidecar without a
  token answers no admin request.
"""

from __future__ import annotations

import functools

from meshkit.api.access import bearer_matches
from meshkit.proxy.codec.messages import RequestHead, header_value
from meshkit.proxy.config import Listener, ProxyConfig
from meshkit.proxy.policy.hosts import HostAllowList
from meshkit.proxy.policy.router import LocalReply, split_target

FORBIDDEN_HOST = "FH"
ADMIN_TOKEN_MISSING = "AT"
HOST_CHECKED_KINDS = frozenset({"gateway", "upstream", "admin"})


def request_host(head: RequestHead) -> str | None:
    """The Host a request names: its absolute-form target's authority, else its Host header."""
    authority, _ = split_target(head.target)
    if authority is None:
        authority = header_value(head.headers, b"host")
    return None if authority is None else authority.decode("ascii", "replace")


@functools.lru_cache(maxsize=16)
def _allow_list(names: tuple[str, ...]) -> HostAllowList:
    """One allow list per config's names, not one per request."""
    return HostAllowList.of(names)


def admit(
    config: ProxyConfig, listener: Listener, head: RequestHead, *, admin_token: str | None
) -> LocalReply | None:
    """A refusal of ``head`` on ``listener``, or None when it may be routed."""
    if listener.kind in HOST_CHECKED_KINDS:
        host = request_host(head)
        if not _allow_list(config.allowed_hosts).allows(host):
            shown = "no Host" if not host else f"Host '{host}'"
            return LocalReply(
                status=403,
                reason=f"{shown} is not loopback or a name mesh '{config.mesh}' declares",
                flag=FORBIDDEN_HOST,
            )
    if listener.kind == "admin":
        authorization = header_value(head.headers, b"authorization")
        given = None if authorization is None else authorization.decode("latin-1")
        if admin_token is None or not bearer_matches(given, admin_token):
            return LocalReply(
                status=401,
                reason="the admin listener needs the mesh's token (.meshkit/run/observe.token) "
                "as Authorization: Bearer",
                flag=ADMIN_TOKEN_MISSING,
            )
    return None
