"""The map in a real browser: Debian chromium driven by playwright against a real local server.

Every page is checked for console errors and for requests that leave 127.0.0.1 (or file:// for the
standalone map). A screenshot of the home map is kept in tests/artifacts/map.png.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import ROOT
from werkzeug.serving import make_server

from gridmap import maps
from gridmap.app import create_app
from gridmap.cli import main
from gridmap.config import Settings
from gridmap.scoring import score_sites
from gridmap.sites import parse_sites

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = ROOT / "tests" / "artifacts"
XSS = "<img src=x onerror=alert(1)>"
CSV = (
    "site_id,name,lon,lat,it_load_mw,owner\n"
    f"tx1,{XSS},-99.0,32.0,100,{XSS}\n"
    "bad1,Bad longitude,-300,32,100,acme\n"
    "oh1,Ohio,-82.7,40.0,50,acme\n"
)
READY = "window.gridmapView && window.gridmapView.ready"


@pytest.fixture(scope="module")
def server():
    srv = make_server("127.0.0.1", 0, create_app(Settings()), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page with its console errors, page errors, dialogs and requests recorded."""

    def __init__(self, page):
        self.page, self.errors, self.requests, self.dialogs = page, [], [], []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def foreign(self, origin: str) -> list[str]:
        return [u for u in self.requests if not u.startswith((origin + "/", "data:", "blob:"))]


@pytest.fixture
def watched(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 820}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield Watched(page)
    context.close()


def fills(page) -> list[str]:
    return page.eval_on_selector_all("path.gm-region", "els => els.map(e => e.getAttribute('fill'))")


def test_home_map_regions_metric_switch_and_site_popup(server, watched):
    page = watched.page
    page.goto(server + "/")
    page.wait_for_function(READY)
    assert page.locator("path.gm-region").count() == 51
    before = fills(page)
    assert len(set(before)) > 2
    legend = page.locator(".gm-legend")
    assert "Renewable share (%)" in legend.inner_text() and "data year 2023" in legend.inner_text()
    page.select_option("#gm-metric", "co2_kg_per_mwh")
    after = fills(page)
    assert after != before and len(set(after)) > 2
    assert "CO2 rate (kg CO2 / MWh)" in legend.inner_text() and "eGRID2023" in legend.inner_text()
    page.locator("path.gm-region").nth(43).hover(force=True)
    assert page.locator(".gm-info strong").inner_text() != ""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "map.png"))
    assert (ARTIFACTS / "map.png").stat().st_size > 10_000
    page.locator(".gm-site").first.click()
    popup = page.locator(".leaflet-popup-content .gm-site-popup")
    popup.wait_for()
    text = popup.inner_text()
    assert "Score" in text and "rank" in text and "weight 0.3" in text and "Region:" in text
    assert page.locator(".gm-cluster").count() >= 1
    assert watched.errors == []
    assert watched.foreign(server) == []


def test_upload_flow_end_to_end_and_xss_stays_inert(server, watched, tmp_path):
    page = watched.page
    page.goto(server + "/upload")
    page.wait_for_function(READY)
    page.set_input_files("input[name=sites]", files=[{"name": "sites.csv", "mimeType": "text/csv",
                                                      "buffer": CSV.encode()}])  # fmt: skip
    page.fill("input[name=w_price]", "0.5")
    with page.expect_navigation():
        page.click("#gm-upload button[type=submit]")
    page.wait_for_function(READY)
    rows = page.locator("#gm-ranked tbody tr")
    assert rows.count() == 2
    assert "row 2, lon:" in page.locator("#gm-errors").inner_text()
    # the XSS name is visible as text in the table and in its popup, and never runs
    xss_row = rows.filter(has_text=XSS)
    assert xss_row.count() == 1
    xss_row.click()
    popup = page.locator(".leaflet-popup-content .gm-site-popup")
    popup.wait_for()
    assert popup.locator("h3").inner_text() == XSS
    assert XSS in popup.inner_text()  # the extra column 'owner' too
    page.wait_for_timeout(300)
    assert page.locator("img[src='x']").count() == 0 and watched.dialogs == []
    with page.expect_download() as info:
        page.click("#gm-downloads >> text=CSV")
    saved = tmp_path / "scored.csv"
    info.value.save_as(saved)
    assert list(pd.read_csv(saved)["site_id"]) == ["tx1", "oh1"]
    href = page.get_attribute("#gm-downloads >> text=GeoJSON", "href")
    doc = page.request.get(server + href).json()
    assert doc["gridmap"]["weights"]["price"] == 0.5 and len(doc["features"]) == 2
    assert watched.errors == []
    assert watched.foreign(server) == []


def test_standalone_map_from_the_cli_works_from_disk(watched, tmp_path):
    out = tmp_path / "map.html"
    result = CliRunner().invoke(main, ["map", str(ROOT / "data" / "sample_sites.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = watched.page
    page.goto(out.as_uri())
    page.wait_for_function(READY)
    assert page.locator("path.gm-region").count() == 51
    assert page.locator(".gm-site").count() + page.locator(".gm-cluster").count() >= 4
    page.locator(".gm-site").first.click()
    page.locator(".leaflet-popup-content .gm-score").wait_for()
    assert watched.errors == []
    assert [u for u in watched.requests if not u.startswith(("file://", "data:"))] == []


def test_ten_thousand_sites_cluster_and_open_a_popup(us_layer, watched, tmp_path):
    rng = np.random.default_rng(4)
    n = 10_000
    frame = pd.DataFrame({"site_id": [f"s{i}" for i in range(n)], "lon": rng.uniform(-120, -75, n),
                          "lat": rng.uniform(30, 47, n), "it_load_mw": rng.uniform(10, 1000, n)})  # fmt: skip
    result = score_sites(parse_sites(frame), us_layer)
    out = maps.write_html(maps.build_map(us_layer, result, asset_base=None), tmp_path / "big.html")
    page = watched.page
    page.goto(out.as_uri())
    page.wait_for_function(READY)
    assert page.evaluate("gridmapView.markers.length") == n
    assert page.locator(".gm-cluster").count() > 0
    page.evaluate("gridmapView.showSite(0)")
    popup = page.locator(".leaflet-popup-content .gm-site-popup")
    popup.wait_for()
    page.wait_for_function("!!gridmapView.markers[0]._icon")  # zoomed until the site left its cluster
    best = maps.ranked_sites(result.frame).iloc[0]
    assert f"Site id: {best['site_id']}" in popup.inner_text() and f"Score {best['score']:.1f}" in popup.inner_text()
    assert watched.errors == []
