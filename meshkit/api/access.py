"""Who may read the dashboard, the mesh's metrics and the sidecars' admin pages: the mesh's
own user (pure, plus one file).

The control plane makes a random token at start and writes it to
``.meshkit/run/observe.token`` (mode 0600, in the 0700 run directory), so only
the user who runs the mesh can read it; every sidecar reads it at start
(beside the control socket) and answers its admin listener only to requests
that send it as ``Authorization: Bearer`` (``bearer_header``).
A request to the observe server is let in when it carries
the token as ``?token=`` (the address ``meshkit up`` prints; the answer sets
it as an HttpOnly, SameSite=Strict cookie and sends the browser on to the
same page without it), as that cookie, or as ``Authorization: Bearer``
(Prometheus' ``credentials_file``).  Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

COOKIE_NAME = "meshkit_observe"
TOKEN_FILE = "observe.token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token(run_dir: Path, token: str) -> Path:
    """Write ``token`` to ``run_dir/observe.token``, readable by the owner only."""
    path = run_dir / TOKEN_FILE
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return path


def read_token(run_dir: Path) -> str | None:
    try:
        return (run_dir / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def token_in_query(query: str) -> str | None:
    values = parse_qs(query).get("token")
    return values[0] if values else None


def bearer_header(token: str) -> tuple[str, str]:
    """The header a client of the admin listeners and the observe server sends."""
    return ("Authorization", f"Bearer {token}")


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>`` (constant-time)."""
    if authorization is None or not authorization.startswith("Bearer "):
        return False
    return _same(authorization[7:].strip(), token)


def allowed(token: str, *, query: str, headers: dict[str, str]) -> bool:
    """Whether a request with this query string and (lower-cased) headers may be answered."""
    given = token_in_query(query)
    if given is not None and _same(given, token):
        return True
    if bearer_matches(headers.get("authorization"), token):
        return True
    try:
        cookie = SimpleCookie(headers.get("cookie", ""))
    except CookieError:
        return False
    morsel = cookie.get(COOKIE_NAME)
    return morsel is not None and _same(morsel.value, token)


def session_cookie(token: str) -> str:
    return f"{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/"
