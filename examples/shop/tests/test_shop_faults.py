"""The shop under faults: what a test can do to a running mesh with meshkit's pytest plugin.

``mesh.fault`` makes the mesh itself fail or slow down the requests to a
service (the caller's sidecar answers, flag ``FI``), ``mesh.limit`` rate-limits
them (the service's sidecar answers 429, flag ``RL``), ``mesh.calls`` shows the
requests a service answered and who made them, ``mesh.kill`` kills an
instance (the mesh restarts it).  Run from the repository root:
``pytest examples/shop/tests`` (add ``-n 2`` for two workers).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from meshkit.testing.handle import MeshHandle

pytestmark = pytest.mark.meshfile("meshfile.example.py")


def get(url: str) -> tuple[int, bytes, str | None]:
    """Status, body and the mesh's response flag (None when the app answered)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers.get("x-meshkit-flag")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("x-meshkit-flag")


def test_a_catalog_outage_is_answered_by_the_mesh_and_then_over(mesh: MeshHandle) -> None:
    with mesh.fault("catalog", abort=503):
        status, _, flag = get(mesh.url("catalog") + "/items")
        assert (status, flag) == (503, "FI")
        status, body, _ = get(mesh.url("frontend") + "/")
        assert status == 502 and b"503" in body  # the frontend's own error page
    status, _, flag = get(mesh.url("catalog") + "/items")
    assert (status, flag) == (200, None)


def test_calls_tell_who_called_whom(mesh: MeshHandle) -> None:
    started = time.time()
    status, _, _ = get(mesh.url("frontend") + "/")
    assert status == 200
    [page] = [call for call in mesh.calls("frontend", since=started) if call.path == "/"]
    assert (page.caller, page.status) == ("gateway", 200)
    assert {call.caller for call in mesh.calls("catalog", since=started)} == {"frontend"}
    assert {call.path for call in mesh.calls("reviews", since=started)} == {"/reviews"}


def test_a_killed_instance_is_back_and_its_calls_are_logged(mesh: MeshHandle) -> None:
    mesh.kill("reviews")
    mesh.wait_healthy("reviews", timeout=30)
    mesh.clear_calls("reviews")
    status, _, _ = get(mesh.url("reviews") + "/reviews")
    assert status == 200
    [call] = mesh.calls("reviews")
    assert (call.method, call.path, call.status, call.flag) == ("GET", "/reviews", 200, "-")
    assert call.caller_identity is not None and call.caller_identity.startswith("spiffe://")


def test_a_failing_catalog_breaks_the_page_cleanly(mesh: MeshHandle) -> None:
    """The README's example, kept true by running it."""
    mesh.clear_calls("catalog")
    with mesh.fault("catalog", abort=503), pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(mesh.url("frontend") + "/api", timeout=10)
    assert error.value.code == 502  # the frontend's own error page
    error.value.close()
    assert mesh.calls("catalog") == []  # the mesh answered: catalog never saw it


def test_a_rate_limit_set_by_the_test_refuses_the_excess(mesh: MeshHandle) -> None:
    """``mesh.limit``: reviews' sidecar admits 2 requests, then answers 429 (flag RL) itself."""
    mesh.clear_calls("reviews")
    with mesh.limit("reviews", "2/h"):
        answers = [get(mesh.url("reviews") + "/reviews")[::2] for _ in range(4)]
        assert answers == [(200, None), (200, None), (429, "RL"), (429, "RL")]
    assert get(mesh.url("reviews") + "/reviews")[0] == 200
    assert [call.flag for call in mesh.calls("reviews")] == ["-", "-", "RL", "RL", "-"]
