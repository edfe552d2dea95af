"""gridmap.maps without a browser: local assets per map, offline check, data block, escaping, caps."""

from __future__ import annotations

import json
import re

import folium
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from gridmap import maps
from gridmap.assets import asset_files
from gridmap.errors import GridmapError
from gridmap.scoring import load_stress, score_sites
from gridmap.sites import parse_records, read_sites

XSS = "<img src=x onerror=alert(1)>"
CLOSER = "</script><script>alert(2)</script>"


@pytest.fixture(scope="module")
def sample(us_layer):
    return score_sites(read_sites(ROOT / "data" / "sample_sites.csv"), us_layer)


@pytest.fixture(scope="module")
def hostile(us_layer):
    records = [
        {"site_id": "x1", "name": XSS, "lon": -99.0, "lat": 32.0, "it_load_mw": 100, "note": CLOSER},
        {"site_id": CLOSER, "name": "url(http://evil.example/a.png)", "lon": -80.0, "lat": 40.0, "it_load_mw": 50,
         "note": '<link href="https://evil.example/x.css">'},
    ]  # fmt: skip
    return score_sites(parse_records(records), us_layer)


def data_block(html: str) -> dict:
    text = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.DOTALL).group(1)
    return json.loads(text)


def test_map_uses_local_assets_and_leaves_folium_class_lists_alone(us_layer, sample):
    before_js, before_css = list(folium.Map.default_js), list(folium.Map.default_css)
    html = maps.render_html(maps.build_map(us_layer, sample, asset_base="/assets"))
    srcs = re.findall(r'<script src="([^"]+)"', html) + re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert srcs and all(s.startswith("/assets/") for s in srcs)
    assert "/assets/leaflet/leaflet.js" in srcs and "/assets/markercluster/leaflet.markercluster.js" in srcs
    assert folium.Map.default_js == before_js and folium.Map.default_css == before_css
    assert any("cdn" in url for _, url in folium.Map.default_js)  # a plain folium map is unchanged


def test_max_zoom_is_set_without_tiles(us_layer, sample):
    html = maps.render_html(maps.build_map(us_layer, sample))
    assert f'"maxZoom": {maps.MAX_ZOOM}' in html
    assert "tileLayer" not in html


@pytest.mark.parametrize(
    "snippet",
    ['<script src="https://cdn.example/x.js"></script>', '<link rel="stylesheet" href="//cdn.example/x.css">',
     "<style>@font-face{src:url('https://fonts.example/f.woff')}</style>", '<img src="http://x.example/a.png">',
     "<style>@import 'https://x.example/a.css';</style>"],
)  # fmt: skip
def test_check_offline_raises_on_remote_assets(snippet):
    with pytest.raises(maps.RemoteAssetError):
        maps.check_offline(f"<html><head>{snippet}</head></html>")


def test_render_raises_if_a_cdn_link_is_left(us_layer, sample):
    m = maps.build_map(us_layer, sample)
    m.default_js = [*m.default_js, ("cdn", "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js")]
    with pytest.raises(maps.RemoteAssetError, match="cdn.jsdelivr"):
        maps.render_html(m)


def test_user_text_that_looks_like_remote_urls_is_data_not_an_asset(us_layer, hostile):
    html = maps.render_html(maps.build_map(us_layer, hostile))
    assert data_block(html)["sites"]["data"]


def test_user_text_cannot_break_out_of_the_data_block(us_layer, hostile):
    html = maps.render_html(maps.build_map(us_layer, hostile))
    assert XSS not in html and CLOSER not in html and '<link href="https://evil' not in html
    sites = data_block(html)["sites"]
    rows = [dict(zip(sites["columns"], r, strict=True)) for r in sites["data"]]
    assert {r["name"] for r in rows} == {XSS, "url(http://evil.example/a.png)"}
    assert {r["extra:note"] for r in rows} == {CLOSER, '<link href="https://evil.example/x.css">'}
    assert CLOSER in {r["site_id"] for r in rows}


def test_standalone_inlines_every_asset(us_layer, sample):
    html = maps.render_html(maps.build_map(us_layer, sample, asset_base=None))
    assert "<script src=" not in html and 'rel="stylesheet"' not in html
    for path in asset_files()["js"]:
        assert path.read_text(encoding="utf-8")[:200] in html
    assert "url(images/" not in html and "data:image/png;base64," in html


def test_data_block_has_regions_metrics_sites_and_weights(us_layer, sample):
    data = data_block(maps.render_html(maps.build_map(us_layer, sample, metric="co2_kg_per_mwh")))
    assert data["metric"] == "co2_kg_per_mwh"
    assert [m["key"] for m in data["metrics"]] == list(maps.METRICS)
    units = {m["key"]: m["unit"] for m in data["metrics"]}
    assert units["co2_kg_per_mwh"] == "kg CO2 / MWh" and units["price_cents_per_kwh"] == "US cents / kWh"
    assert all(m["source"] for m in data["metrics"])
    assert data["layer"]["data_year"] == 2023 and data["layer"]["sources"]
    assert len(data["regions"]["features"]) == len(us_layer.frame)
    assert data["weights"] == sample.provenance["weights"]
    sites = data["sites"]
    assert len(sites["data"]) == len(sample.frame)
    for col in ("score", "rank", "score_renewable", "score_carbon", "score_stress", "score_price", "site_id"):
        assert col in sites["columns"]
    ranks = [r[sites["columns"].index("rank")] for r in sites["data"]]
    assert ranks == sorted(ranks)  # rank order: the ranked table's row i is the map's site i


def test_region_load_stress_is_the_core_formula_with_no_added_load(us_layer):
    figures = maps.region_figures(us_layer)
    expected = load_stress(us_layer.figures, np.zeros(len(us_layer.figures)))["load_stress"]
    np.testing.assert_allclose(figures["load_stress"].to_numpy(), expected)
    assert figures["load_stress"].between(0, 1).all()


def test_sites_beyond_the_cap_are_left_off_with_a_note(us_layer, sample):
    data = data_block(maps.render_html(maps.build_map(us_layer, sample, max_sites=5)))
    assert len(data["sites"]["data"]) == 5
    assert "5 best-ranked of 12" in data["note"]
    ranks = [r[data["sites"]["columns"].index("rank")] for r in data["sites"]["data"]]
    assert ranks == sorted(sample.frame["rank"].dropna())[:5]


def test_unscored_sites_come_last(us_layer):
    records = [{"site_id": "out", "lon": 0.0, "lat": 0.0, "it_load_mw": 5},
               {"site_id": "in", "lon": -99.0, "lat": 32.0, "it_load_mw": 5}]  # fmt: skip
    result = score_sites(parse_records(records), us_layer)
    assert list(maps.ranked_sites(result.frame)["site_id"]) == ["in", "out"]
    data = data_block(maps.render_html(maps.build_map(us_layer, result)))
    assert data["sites"]["data"][1][data["sites"]["columns"].index("score")] is None


def test_map_of_regions_only(us_layer):
    data = data_block(maps.render_html(maps.build_map(us_layer)))
    assert data["sites"] is None and len(data["regions"]["features"]) == 51


def test_unknown_metric_is_an_error(us_layer):
    with pytest.raises(GridmapError, match="unknown metric 'wind'"):
        maps.build_map(us_layer, metric="wind")


def test_render_parts_split_the_document(us_layer, sample):
    parts = maps.render_parts(maps.build_map(us_layer, sample))
    assert "/assets/leaflet/leaflet.css" in parts.head and "<body" not in parts.head
    assert 'class="folium-map"' in parts.body and 'type="application/json"' in parts.body
    assert "gridmap.init(" in parts.script and "L.map(" in parts.script


def test_write_html_is_atomic_and_complete(us_layer, sample, tmp_path):
    out = maps.write_html(maps.build_map(us_layer, sample, asset_base=None), tmp_path / "map.html")
    assert out.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert [p.name for p in tmp_path.iterdir()] == ["map.html"]


def test_squares_layer_without_metadata(squares):
    records = pd.DataFrame({"lon": [0.5, 1.5], "lat": [0.5, 0.5], "it_load_mw": [10.0, 10.0]})
    result = score_sites(parse_records(records.to_dict("records")), squares)
    data = data_block(maps.render_html(maps.build_map(squares, result)))
    assert {f["properties"]["region_id"] for f in data["regions"]["features"]} == {"A", "B", "C"}
    price = [f["properties"]["price_cents_per_kwh"] for f in data["regions"]["features"]]
    assert None in price  # an empty figure stays empty (the map shows "no data")


def test_template_syntax_in_user_text_is_not_evaluated(us_layer):
    records = [{"site_id": "t1", "name": "{{ 7*7 }} {% if 1 %}x{% endif %} {# c", "lon": -99.0, "lat": 32.0,
                "it_load_mw": 1}]  # fmt: skip
    html = maps.render_html(maps.build_map(us_layer, score_sites(parse_records(records), us_layer)))
    assert data_block(html)["sites"]["data"][0][1] == "{{ 7*7 }} {% if 1 %}x{% endif %} {# c"
