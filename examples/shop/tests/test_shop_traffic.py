"""The shop's traffic as the mesh saw it: the service graph's edges and one request's trace.

Run from the repository root: ``pytest examples/shop/tests``.
"""

from __future__ import annotations

import urllib.request
import uuid

import pytest

from meshkit.testing.handle import MeshHandle

pytestmark = pytest.mark.meshfile("meshfile.example.py")


def test_one_page_makes_one_call_to_catalog_over_mtls(mesh: MeshHandle) -> None:
    def calls_to_catalog() -> int:
        return sum(
            edge.requests
            for edge in mesh.traffic()
            if edge.source == "frontend" and edge.target.startswith("catalog")
        )

    before = calls_to_catalog()
    request_id = f"shop-page-{uuid.uuid4().hex}"
    request = urllib.request.Request(
        mesh.url("frontend") + "/", headers={"x-request-id": request_id}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert calls_to_catalog() == before + 1
    # No request crossed without mTLS ("unknown": answered by the caller's sidecar, never sent).
    assert all(edge.mtls in ("mutual_tls", "unknown") for edge in mesh.traffic())
    assert {edge.mtls for edge in mesh.traffic() if edge.source == "gateway"} == {"mutual_tls"}
    [root] = mesh.trace(request_id)
    assert (root["instance"], root["kind"]) == ("gateway", "client")
    [frontend] = root["children"]
    assert frontend["service"] == "frontend"
    assert sorted(call["route"] for call in frontend["children"]) == ["/items", "/reviews"]
