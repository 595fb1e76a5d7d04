"""catalog: the items for sale. v1 and v2 differ by the flavour they report."""

from __future__ import annotations

import os

from common import json_body, serve

ITEMS = [
    {"id": 1, "name": "teapot", "price": 18.0},
    {"id": 2, "name": "kettle", "price": 32.5},
    {"id": 3, "name": "mug", "price": 6.0},
]


def items(_request: object) -> tuple[int, str, bytes]:
    version = os.environ.get("MESHKIT_VERSION", "v?")
    flavour = os.environ.get("CATALOG_FLAVOUR", "classic")
    return (200, *json_body({"version": version, "flavour": flavour, "items": ITEMS}))


def healthz(_request: object) -> tuple[int, str, bytes]:
    return 200, "text/plain", b"ok\n"


if __name__ == "__main__":
    serve("catalog", {"/items": items, "/healthz": healthz})
