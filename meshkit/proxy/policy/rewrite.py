"""Edits a matched rule makes: header set/add/remove, path prefix rewrite, redirect target.

Pure functions over ``messages.Headers`` (lower-case byte names) and request
targets; the forwarding code applies them to what it sends.
"""

from __future__ import annotations

from meshkit.api import HeaderOps, Redirect, RequestMatch
from meshkit.proxy.codec.messages import Headers, header_value


def apply_header_ops(headers: Headers, ops: HeaderOps) -> Headers:
    """A new header list: ``remove`` first, then ``set`` (replacing), then ``add``.

    ``set`` keeps the position of the header's first occurrence when there was
    one, and appends it otherwise.
    """
    if ops.empty:
        return list(headers)
    removed = {name.lower().encode("latin-1") for name in ops.remove}
    replaced = {name.lower().encode("latin-1"): value.encode("latin-1") for name, value in ops.set}
    result: Headers = []
    placed: set[bytes] = set()
    for name, value in headers:
        if name in removed:
            continue
        if name in replaced:
            if name not in placed:
                result.append((name, replaced[name]))
                placed.add(name)
            continue
        result.append((name, value))
    for name, value in replaced.items():
        if name not in placed:
            result.append((name, value))
    for name_text, value_text in ops.add:
        result.append((name_text.lower().encode("latin-1"), value_text.encode("latin-1")))
    return result


def rewrite_target(target: bytes, match: RequestMatch, rewrite_prefix: str) -> bytes:
    """``target`` with its path rewritten, the query string kept (Istio's ``rewrite.uri``).

    After a prefix match the matched prefix is replaced (without doubling a
    ``/`` where the two meet); after any other match the whole path is.
    """
    path, mark, query = target.partition(b"?")
    new_prefix = rewrite_prefix.encode("latin-1")
    old_prefix = match.path.encode("latin-1")
    new_path = new_prefix
    if match.path_kind == "prefix" and path.startswith(old_prefix):
        rest = path[len(old_prefix) :]
        if new_prefix.endswith(b"/") and rest.startswith(b"/"):
            rest = rest[1:]
        new_path = new_prefix + rest
    if not new_path.startswith(b"/"):
        new_path = b"/" + new_path
    return new_path + mark + query


def redirect_location(
    target: bytes, headers: Headers, redirect: Redirect, *, scheme: str = "http"
) -> bytes:
    """The ``Location`` of a redirect: the request's URL with ``path`` and/or ``host`` replaced.

    The query string is kept.  Without a new host and without a ``Host``
    header the location is a path alone, which clients resolve against the
    request.
    """
    path, mark, query = target.partition(b"?")
    new_path = redirect.path.encode("latin-1") if redirect.path is not None else path
    host = (
        redirect.host.encode("latin-1")
        if redirect.host is not None
        else header_value(headers, b"host")
    )
    location = new_path + mark + query
    if host is None:
        return location
    return scheme.encode("ascii") + b"://" + host + location
