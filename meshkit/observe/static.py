"""The dashboard's files, shipped inside the package (``meshkit/observe/static/``).

Nothing is fetched at run time: no CDN, no fonts, no external script.  Only
the files listed in ``FILES`` are served, so no path from a URL ever reaches
the file system.
"""

from __future__ import annotations

from importlib import resources

from meshkit.observe.http import Response

FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
)


def static_file(path: str) -> Response:
    entry = FILES.get(path)
    if entry is None:
        shown = ", ".join(sorted(FILES))
        return Response(
            status=404,
            body=f"no page {path} (the dashboard is /; also /metrics and /api/...; files: {shown})\n".encode(),
            content_type="text/plain; charset=utf-8",
        )
    name, content_type = entry
    body = resources.files("meshkit.observe").joinpath("static", name).read_bytes()
    return Response(status=200, body=body, content_type=content_type, headers=SECURITY_HEADERS)
