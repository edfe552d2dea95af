"""Time to interactive and page size of the site map, gridmap vs a plain folium map, same run.

gridmap: ``maps.build_map`` (one JSON block, markers built client-side into a chunked
L.markerClusterGroup, popups built on click). Baseline: a plain folium map with one ``folium.Marker``
(with a ``folium.Popup``) per site in a ``folium.plugins.MarkerCluster``. Both are standalone
files with the same inlined Leaflet/markercluster (no network) opened from disk in headless
Debian chromium.

Time to interactive = ms from navigation start until the map is initialised and every site is in
the cluster layer (gridmap: ``gridmapView.readyAt``; baseline: the load event, after its inline
scripts have added every marker) + ms to open one site's popup the way a click on it does
(``zoomToShowLayer`` then open, the same for both).

The baseline is bounded: it runs at 1,000 and 10,000 sites only (once at 10,000 with a time limit),
never at 100,000, where folium alone would need minutes to write the file.

Usage: python benchmarks/bench_map.py [--sizes 1000,10000,100000] [--repeat 3] [--baseline-limit 120]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import folium
import numpy as np
import pandas as pd
from folium.plugins import MarkerCluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from branca.element import Element  # noqa: E402

from gridmap import maps  # noqa: E402
from gridmap.assets import package_dir  # noqa: E402
from gridmap.config import Settings  # noqa: E402
from gridmap.regions import default_layer  # noqa: E402
from gridmap.scoring import score_sites  # noqa: E402
from gridmap.sites import parse_sites  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
BASELINE_SIZES = (1_000, 10_000)


def sites(n: int, layer) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    frame = pd.DataFrame({"site_id": [f"s{i}" for i in range(n)], "name": [f"Site {i}" for i in range(n)],
                          "lon": rng.uniform(-120, -75, n), "lat": rng.uniform(30, 47, n),
                          "it_load_mw": rng.uniform(10, 1000, n)})  # fmt: skip
    return score_sites(parse_sites(frame), layer)


def gridmap_html(result, layer, path: Path) -> dict:
    start = time.perf_counter()
    maps.write_html(maps.build_map(layer, result, asset_base=None, max_sites=len(result.frame)), path)
    served = len(maps.render_html(maps.build_map(layer, result, max_sites=len(result.frame))).encode())
    return {"build_s": time.perf_counter() - start, "bytes": path.stat().st_size, "served_bytes": served}


def baseline_html(result, layer, path: Path) -> dict:
    start = time.perf_counter()
    frame = result.frame
    m = folium.Map(location=[39, -97], zoom_start=4, tiles=None)
    m.options["maxZoom"] = maps.MAX_ZOOM
    maps._use_local_assets(m, None)  # the same inlined Leaflet + markercluster, no CDN
    jquery = (package_dir("jquery") / "jquery.min.js").read_text(encoding="utf-8")
    m.get_root().header.add_child(Element(f"<script>{jquery}</script>"), name="jquery")  # folium popups use $
    folium.GeoJson(layer.display.to_json()).add_to(m)
    cluster = MarkerCluster()
    cluster.default_js, cluster.default_css = [], []
    cluster.add_to(m)
    for r in frame.itertuples():
        text = f"{r.name} ({r.site_id})<br>score {r.score:.1f}, rank {r.rank}<br>{r.region_name}"
        folium.Marker([r.lat, r.lon], popup=folium.Popup(text, max_width=300)).add_to(cluster)
    html = maps.render_html(m)
    html = html.replace("</html>", "<script>window.addEventListener('load', function () {"
                        "requestAnimationFrame(function () { window.benchReady = performance.now(); }); });"
                        "</script></html>")  # fmt: skip
    path.write_text(html, encoding="utf-8")
    return {
        "build_s": time.perf_counter() - start,
        "bytes": path.stat().st_size,
        "names": [m.get_name(), cluster.get_name()],
    }


# what a click on a site runs: gridmap builds the popup now; folium's was built at load
OPEN_GRIDMAP = """() => new Promise(done => {
  const t0 = performance.now();
  gridmapView.openSite(0);
  requestAnimationFrame(() => done(performance.now() - t0));
})"""
OPEN_BASELINE = """([mapName, clusterName]) => new Promise(done => {
  const marker = window[clusterName].getLayers()[0];
  const t0 = performance.now();
  window[mapName].openPopup(marker.getPopup(), marker.getLatLng());
  requestAnimationFrame(() => done(performance.now() - t0));
})"""


def measure(browser, path: Path, *, baseline_cluster: list[str] | None, timeout_s: float) -> dict:
    page = browser.new_page(viewport={"width": 1300, "height": 820})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(path.as_uri(), timeout=timeout_s * 1000, wait_until="commit")
        if baseline_cluster:
            page.wait_for_function("window.benchReady", timeout=timeout_s * 1000, polling=100)
            ready = page.evaluate("window.benchReady")
            popup = page.evaluate(OPEN_BASELINE, baseline_cluster)
        else:
            page.wait_for_function("window.gridmapView && gridmapView.ready", timeout=timeout_s * 1000, polling=50)
            ready = page.evaluate("gridmapView.readyAt")
            popup = page.evaluate(OPEN_GRIDMAP)
        page.wait_for_selector(".leaflet-popup-content", timeout=10_000)
        return {"ready_ms": ready, "popup_ms": popup, "tti_ms": ready + popup, "errors": errors}
    finally:
        page.close()


def run(sizes, repeat: int, baseline_limit: float) -> list[dict]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    layer = default_layer(Settings())
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for n in sizes:
            result = sites(n, layer)
            ours = gridmap_html(result, layer, OUT / f"map_gridmap_{n}.html")
            runs = [measure(browser, OUT / f"map_gridmap_{n}.html", baseline_cluster=None, timeout_s=300)
                    for _ in range(repeat)]  # fmt: skip
            rows.append(summarise("gridmap", n, ours, runs))
            print(fmt(rows[-1]), flush=True)
            if n not in BASELINE_SIZES:
                print(f"baseline  n={n:>7,}: skipped (one folium Marker per site; bounded to {BASELINE_SIZES})")
                continue
            base = baseline_html(result, layer, OUT / f"map_folium_{n}.html")
            tries = repeat if n < 10_000 else 1
            try:
                runs = [measure(browser, OUT / f"map_folium_{n}.html", baseline_cluster=base["names"],
                                timeout_s=baseline_limit) for _ in range(tries)]  # fmt: skip
            except PlaywrightError as exc:
                runs = [{"ready_ms": None, "popup_ms": None, "tti_ms": None, "errors": [str(exc)[:200]]}]
            rows.append(summarise("folium", n, base, runs))
            print(fmt(rows[-1]), flush=True)
        browser.close()
    return rows


def summarise(kind: str, n: int, built: dict, runs: list[dict]) -> dict:
    def median(key):
        values = [r[key] for r in runs if r[key] is not None]
        return statistics.median(values) if values else None

    return {"map": kind, "sites": n, "runs": len(runs), "build_s": built["build_s"], "html_bytes": built["bytes"],
            "served_html_bytes": built.get("served_bytes"), "ready_ms": median("ready_ms"),
            "popup_ms": median("popup_ms"), "tti_ms": median("tti_ms"),
            "errors": sorted({e for r in runs for e in r["errors"]})}  # fmt: skip


def fmt(row: dict) -> str:
    tti = (
        "timed out"
        if row["tti_ms"] is None
        else f"{row['tti_ms']:8.0f} ms (ready {row['ready_ms']:.0f} + popup {row['popup_ms']:.0f})"
    )
    served = f", served {row['served_html_bytes'] / 1e6:.2f} MB" if row["served_html_bytes"] else ""
    return (f"{row['map']:<8}  n={row['sites']:>7,}: tti {tti}; html {row['html_bytes'] / 1e6:.2f} MB{served}; "
            f"python build {row['build_s']:.1f} s; runs {row['runs']}; errors {row['errors'] or 'none'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-limit", type=float, default=120.0, help="seconds before the baseline gives up")
    args = parser.parse_args()
    rows = run([int(s) for s in args.sizes.split(",")], args.repeat, args.baseline_limit)
    by = {(r["map"], r["sites"]): r for r in rows}
    for n in BASELINE_SIZES:
        ours, base = by.get(("gridmap", n)), by.get(("folium", n))
        if ours and base and base["tti_ms"]:
            print(f"ratio n={n:,}: folium/gridmap tti {base['tti_ms'] / ours['tti_ms']:.1f}x, "
                  f"html {base['html_bytes'] / ours['html_bytes']:.1f}x")  # fmt: skip
    (OUT / "bench_map.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
