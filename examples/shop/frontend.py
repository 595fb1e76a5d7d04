"""frontend: an HTML page built from what it fetched through the mesh.

It reaches the catalog through ``HTTP_PROXY`` (``http://catalog/items``: any
HTTP client that honours the proxy variables works) and the reviews through
``REVIEWS_URL``, the sidecar's port dedicated to that upstream.
"""

from __future__ import annotations

import html
import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any

from common import json_body, serve, trace_headers


def fetch(url: str, request: BaseHTTPRequestHandler) -> Any:
    """GET ``url`` for ``request``, passing its trace headers on."""
    call = urllib.request.Request(url, headers=trace_headers(request))
    with urllib.request.urlopen(call, timeout=5) as response:
        return json.load(response)


def page(request: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
    catalog = fetch("http://catalog/items", request)
    stars = fetch(os.environ["REVIEWS_URL"] + "/reviews", request)["stars"]
    rows = "".join(
        f"<li>{html.escape(item['name'])}: {item['price']:.2f} "
        f"({'*' * stars.get(str(item['id']), 0)})</li>"
        for item in catalog["items"]
    )
    body = (
        "<!doctype html><title>shop</title>"
        f"<h1>shop</h1><p>catalog {html.escape(catalog['version'])} "
        f"({html.escape(catalog['flavour'])})</p><ul>{rows}</ul>\n"
    )
    return 200, "text/html; charset=utf-8", body.encode()


def api(request: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
    return (200, *json_body({"catalog": fetch("http://catalog/items", request)}))


def healthz(_request: object) -> tuple[int, str, bytes]:
    return 200, "text/plain", b"ok\n"


if __name__ == "__main__":
    serve("frontend", {"/": page, "/api": api, "/healthz": healthz})
