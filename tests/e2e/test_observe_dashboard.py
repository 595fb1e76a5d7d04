"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) over DevTools.

The example shop runs, the test sends traffic through the gateway, opens the
address ``meshkit up`` printed and checks that the graph shows the edges with
their counts, that a fault set from the page takes effect on the traffic, and
that the page shows it without being reloaded.  ``MESHKIT_DASHBOARD_PNG=path``
also saves the screenshot there (how ``docs/dashboard.png`` was made).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.browser import Browser, Tab, chromium_path
from tests.meshproc import MeshProcess, example_meshfile, running_mesh

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        chromium_path() is None,
        reason="Debian's chromium is not installed (apt-get install chromium; scripts/test does)",
    ),
]

PAGES = 6
EDGES = "[...document.querySelectorAll('#graph .edge')]"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    workdir = tmp_path_factory.mktemp("dashboard-shop")
    with running_mesh(workdir, example_meshfile(workdir), gateway_synced=True) as running:
        yield running


@pytest.fixture
def tab(shop: MeshProcess, tmp_path: Path) -> Iterator[Tab]:
    printed = re.search(r"meshkit: dashboard (http://127\.0\.0\.1:\d+/\?token=\S+)", shop.output())
    assert printed is not None, "meshkit up printed no dashboard address"
    browser = Browser(tmp_path / "profile")
    try:
        yield browser.open(printed[1])
    finally:
        browser.close()


def edges(tab: Tab) -> list[dict[str, str]]:
    found: list[dict[str, str]] = tab.evaluate(
        f"{EDGES}.map((edge) => Object.assign({{}}, edge.dataset, {{label: edge.textContent}}))"
    )
    return found


def page_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_the_graph_shows_the_traffic_and_a_fault_set_from_the_page_takes_effect(
    shop: MeshProcess, tab: Tab, tmp_path: Path
) -> None:
    for _ in range(PAGES):
        assert page_status(shop.gateway_url() + "/") == 200
    tab.wait_for(
        f"{EDGES}.some((e) => e.dataset.source === 'gateway' && Number(e.dataset.requests) >= {PAGES})"
    )
    # The token went into a cookie and out of the address bar.
    assert tab.evaluate("location.search") == ""
    seen = {(edge["source"], edge["target"]): edge for edge in edges(tab)}
    assert int(seen[("gateway", "frontend")]["requests"]) == PAGES
    assert int(seen[("frontend", "reviews")]["requests"]) == PAGES
    catalog = [edge for (source, target), edge in seen.items() if target.startswith("catalog v")]
    assert sum(int(edge["requests"]) for edge in catalog) == PAGES
    assert all(edge["mtls"] == "mutual_tls" for edge in seen.values())
    assert f"{PAGES} req" in seen[("gateway", "frontend")]["label"]
    assert "mTLS" in seen[("gateway", "frontend")]["label"]
    loaded_at = tab.evaluate("performance.timeOrigin")
    polls = int(tab.evaluate("document.getElementById('updated').dataset.count"))

    tab.evaluate("document.querySelector('#services li[data-service=catalog]').click()")
    tab.wait_for("document.getElementById('detail-title').textContent === 'catalog'")
    tab.wait_for("document.querySelectorAll('#instances tbody tr').length === 3")
    tab.evaluate(
        "document.querySelector('#fault-form [name=abort]').value = '503';"
        "document.getElementById('fault-set').click()"
    )
    result = tab.wait_for(
        "(t => /set|error|must|unknown/.test(t) && t)(document.getElementById('fault-result').textContent)"
    )
    assert "in force" in result, result
    # The frontend gets the mesh's 503 for catalog and answers with its own error page.
    assert page_status(shop.gateway_url() + "/api") == 502
    status, faults = shop.api("GET", "/v1/faults")
    assert status == 200 and [fault["service"] for fault in faults["faults"]] == ["catalog"]
    broken = tab.wait_for(
        f"{EDGES}.filter((e) => e.dataset.source === 'frontend' && e.dataset.target === 'catalog'"
        " && Number(e.dataset.errorShare) > 0).map((e) => e.textContent)[0]"
    )
    assert "FI" in broken and "100.0% err" in broken
    tab.wait_for("document.querySelector('#faults li[data-fault]') !== null")
    assert tab.evaluate("performance.timeOrigin") == loaded_at, "the page was reloaded"
    assert int(tab.evaluate("document.getElementById('updated').dataset.count")) > polls

    picture = tab.screenshot()
    assert picture.startswith(b"\x89PNG")
    (tmp_path / "dashboard.png").write_bytes(picture)
    if os.environ.get("MESHKIT_DASHBOARD_PNG"):
        Path(os.environ["MESHKIT_DASHBOARD_PNG"]).write_bytes(picture)

    tab.evaluate("document.getElementById('fault-clear').click()")
    tab.wait_for("/cleared 1/.test(document.getElementById('fault-result').textContent)")
    assert page_status(shop.gateway_url() + "/api") == 200
    status, faults = shop.api("GET", "/v1/faults")
    assert json.dumps(faults["faults"]) == "[]"


def test_the_page_refuses_a_browser_without_the_token(shop: MeshProcess) -> None:
    address = json.loads((shop.workdir / ".meshkit" / "run" / "observe.json").read_text())
    assert page_status(address["url"] + "/") == 401
    assert page_status(address["url"] + "/api/graph") == 401
    assert page_status(address["url"] + "/?token=wrong") == 401
