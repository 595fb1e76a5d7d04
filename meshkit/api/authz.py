"""Authorization by identity (Istio's AuthorizationPolicy, in small): who may call a service.

A policy protects one service and either ALLOWs or DENYs the requests one of
its rules matches.  The called instance's inbound sidecar decides, from the
verified peer certificate only (``meshkit.proxy.policy.authz``):

1. a request a DENY policy matches is denied;
2. a service without ALLOW policies allows every other request;
3. otherwise a request is allowed only when an ALLOW policy matches it.

A policy matches when any of its rules does (no rules: it matches nothing, so
an ALLOW policy without rules allows nothing, Istio's default-deny); a rule
matches when every condition it sets holds; a condition holds when any of its
values matches, a ``not_`` condition when none does.

Values are plain data: principals are whole SPIFFE IDs; namespaces are mesh
names; paths and header values are Istio's patterns (``pattern_matches``);
``ip_blocks`` are CIDRs of the client address the gateway sees;
``request_principals`` (``issuer/subject``) and ``claims`` (a condition per
claim name, ``HeaderCondition``'s shape) come from the request's verified JWT.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import attrs

AuthzAction = Literal["ALLOW", "DENY"]
AUTHZ_ACTIONS: tuple[AuthzAction, ...] = ("ALLOW", "DENY")


@attrs.frozen(kw_only=True)
class HeaderCondition:
    """Header ``name`` (lower-case) has one of ``values`` and none of ``not_values``."""

    name: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class AuthzRule:
    """Every condition set here must hold; the empty rule matches every request."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()
    headers: tuple[HeaderCondition, ...] = ()
    # From a verified JWT (``meshkit.api.jwt``): ``issuer/subject`` patterns and claims.
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    claims: tuple[HeaderCondition, ...] = ()

    @property
    def speaks_of_client_address(self) -> bool:
        """Whether the rule has a condition only the gateway can evaluate."""
        return bool(self.ip_blocks or self.not_ip_blocks)


@attrs.frozen(kw_only=True)
class AuthzPolicy:
    """One policy on requests to ``service``; ``origin`` is its ``FILE:LINE``."""

    name: str
    service: str
    action: AuthzAction = "ALLOW"
    rules: tuple[AuthzRule, ...] = ()
    origin: str = ""


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not one of Istio's string patterns, or None.

    ``*`` (any value), ``abc*`` (prefix), ``*abc`` (suffix) or ``abc`` (exact).
    """
    if pattern == "":
        return "an empty pattern matches nothing (use '*' for any value)"
    inner = pattern[1:-1] if len(pattern) > 1 else ""
    if "*" in inner or (pattern.startswith("*") and pattern.endswith("*") and pattern != "*"):
        return "'*' may appear only once, at the start (suffix) or the end (prefix)"
    return None


def path_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a path pattern (a pattern that starts with ``/`` or ``*``)."""
    problem = pattern_problem(pattern)
    if problem is None and not pattern.startswith(("/", "*")):
        return "a path pattern starts with '/' (exact, '/api/*' prefix) or '*' (suffix)"
    return problem


def pattern_matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches Istio's ``pattern`` (see ``pattern_problem``)."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def cidr_problem(block: str) -> str | None:
    """Why ``block`` is not an IP address or CIDR block (``10.0.0.0/8``), or None."""
    try:
        ipaddress.ip_network(block, strict=False)
    except ValueError as error:
        return str(error)
    return None


def address_in(address: str, block: str) -> bool:
    """Whether IP ``address`` lies in ``block`` (an address or a CIDR; bad input: False)."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(block, strict=False)
    except ValueError:
        return False
