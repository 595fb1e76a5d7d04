"""reviews: star ratings per item id."""

from __future__ import annotations

from common import json_body, serve

STARS = {1: 5, 2: 4, 3: 3}


def reviews(_request: object) -> tuple[int, str, bytes]:
    return (200, *json_body({"stars": STARS}))


def healthz(_request: object) -> tuple[int, str, bytes]:
    return 200, "text/plain", b"ok\n"


if __name__ == "__main__":
    serve("reviews", {"/reviews": reviews, "/healthz": healthz})
