"""The HTML pages through Flask's test client: map, assets, upload, downloads, limits, methodology."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace

import geopandas as gpd
import pandas as pd
import pytest

from gridmap.app import create_app
from gridmap.config import Settings

XSS = "<img src=x onerror=alert(1)>"
CSV = (
    "site_id,name,lon,lat,it_load_mw,owner\n"
    f'tx1,{XSS},-99.0,32.0,100,=HYPERLINK("x")\n'
    "bad1,Bad longitude,-300,32,100,acme\n"
    "oh1,Ohio,-82.7,40.0,50,acme\n"
    "bad2,No load,-80,40,,acme\n"
)


def post_sites(client, text: str | bytes, filename: str = "sites.csv", **form):
    data = text.encode() if isinstance(text, str) else text
    return client.post("/upload", data={"sites": (io.BytesIO(data), filename), **form},
                       content_type="multipart/form-data")  # fmt: skip


def links(html: str) -> list[str]:
    return re.findall(r'<(?:script|img)[^>]*\bsrc="([^"]+)"', html) + re.findall(r'<link[^>]*\bhref="([^"]+)"', html)


@pytest.fixture(scope="module")
def uploaded(client):
    response = post_sites(client, CSV, w_renewable="1", w_carbon="0", w_stress="", w_price="")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    token = re.search(r'/upload/([\w-]{22})/geojson"', html).group(1)
    return html, token


def test_home_page_has_map_table_and_only_local_assets(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'class="folium-map"' in html and "gridmap.init(" in html
    assert html.count("data-gm-site=") == 12
    urls = links(html)
    assert urls and all(u.startswith("/assets/") for u in urls)
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.data
        asset.close()


ESCAPES = [
    "/assets/leaflet/../../__init__.py",
    "/assets/leaflet/%2e%2e/%2e%2e/__init__.py",
    "/assets/gridmap/..%2f..%2fsetup.py",
    "/assets/os/path.py",
    "/assets/leaflet//etc/passwd",
    "/assets/leaflet/nope.js",
    "/assets/gridmap/../gridmap/web.py",
]
VENDOR = [
    ("/assets/leaflet/leaflet.css", b".leaflet-pane"),
    ("/assets/markercluster/leaflet.markercluster.js", b"MarkerCluster"),
    ("/assets/jquery/jquery.min.js", b"jQuery"),
    ("/assets/font-awesome/css/all.min.css", b"Font Awesome"),
    ("/assets/leaflet/images/layers.png", b"PNG"),
    ("/assets/gridmap/gridmap.js", b"gridmap"),
]


@pytest.mark.parametrize("url", ESCAPES)
def test_assets_cannot_leave_their_folders(client, url):
    # werkzeug merges "//" with a redirect first; the final answer must still be 404
    assert client.get(url, follow_redirects=True).status_code == 404


@pytest.mark.parametrize("url,marker", VENDOR)
def test_assets_serve_the_installed_packages(client, url, marker):
    response = client.get(url)
    assert response.status_code == 200 and marker in response.data
    response.close()


def test_upload_form(client):
    html = client.get("/upload").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and 'name="sites"' in html and 'name="w_price"' in html


def test_upload_scores_ranks_and_lists_bad_rows(uploaded):
    html, _ = uploaded
    assert "row 2, lon:" in html and "row 4, it_load_mw:" in html
    assert html.count("data-gm-site=") == 2
    assert re.search(r"4 rows read: 2 sites placed, 2 scored,\s+2 problem\(s\) in 2 row\(s\)", html)


def test_upload_escapes_user_text(uploaded):
    html, _ = uploaded
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the ranked table, autoescaped


def test_download_geojson_csv_parquet_and_errors(client, uploaded, tmp_path):
    _, token = uploaded
    doc = json.loads(client.get(f"/upload/{token}/geojson").get_data(as_text=True))
    assert [f["properties"]["site_id"] for f in doc["features"]] == ["tx1", "oh1"]
    assert doc["gridmap"]["weights"] == {"renewable": 1.0, "carbon": 0.0, "stress": 0.0, "price": 0.0}
    assert doc["features"][0]["properties"]["name"] == XSS
    response = client.get(f"/upload/{token}/csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="gridmap-scored.csv"'
    table = pd.read_csv(io.StringIO(response.get_data(as_text=True)))
    assert list(table["site_id"]) == ["tx1", "oh1"] and table["owner"][0].startswith("'=")
    parquet = client.get(f"/upload/{token}/parquet")
    (tmp_path / "s.parquet").write_bytes(parquet.data)
    parquet.close()
    gdf = gpd.read_parquet(tmp_path / "s.parquet")
    assert gdf.crs.equals("OGC:CRS84") and list(gdf["site_id"]) == ["tx1", "oh1"]
    response = client.get(f"/upload/{token}/errors")
    errors = pd.read_csv(io.BytesIO(response.data))
    response.close()
    assert list(errors["row"]) == [2, 4] and list(errors["field"]) == ["lon", "it_load_mw"]


@pytest.mark.parametrize(
    "url", ["/upload/AAAAAAAAAAAAAAAAAAAAAA/csv", "/upload/..%2f..%2fetc/csv", "/upload/short/csv"]
)
def test_unknown_or_malformed_tokens_are_404(client, url):
    assert client.get(url).status_code == 404


def test_unknown_download_format_is_404(client, uploaded):
    assert client.get(f"/upload/{uploaded[1]}/xlsx").status_code == 404


def test_upload_geojson(client):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-99.0, 32.0]},
         "properties": {"site_id": "g1", "it_load_mw": 10}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
         "properties": {"site_id": "g2", "it_load_mw": 10}},
    ]}  # fmt: skip
    response = post_sites(client, json.dumps(doc), "sites.geojson")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "row 2, geometry: geometry is LineString, expected Point" in html
    assert html.count("data-gm-site=") == 1


@pytest.mark.parametrize(
    "text,filename,form,message",
    [(CSV, "sites.xlsx", {}, "unknown file type &#39;.xlsx&#39;"),
     (CSV, "sites.csv", {"w_renewable": "-1"}, "weight renewable=-1.0 must be a number &gt;= 0"),
     (CSV, "sites.csv", {"w_renewable": "0", "w_carbon": "0", "w_stress": "0", "w_price": "0"}, "at least one weight"),
     ("name,lat\nx,1\n", "sites.csv", {}, "lon"),
     ("{not json", "sites.geojson", {}, "not valid JSON")],
)  # fmt: skip
def test_bad_uploads_get_a_clear_message(client, text, filename, form, message):
    response = post_sites(client, text, filename, **form)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_missing_file_is_a_clear_message(client):
    response = client.post("/upload", data={"w_price": "1"}, content_type="multipart/form-data")
    assert response.status_code == 400 and "choose a CSV or GeoJSON file" in response.get_data(as_text=True)


def test_limits_are_enforced_before_parsing():
    small = create_app(replace(Settings(), max_body_bytes=400, max_sites=2)).test_client()
    too_many = post_sites(small, "lon,lat,it_load_mw\n-99,32,1\n-98,32,1\n-97,32,1\n")
    assert too_many.status_code == 413
    assert "the file has 3 sites; one upload may score at most 2" in too_many.get_data(as_text=True)
    too_big = post_sites(small, "lon,lat,it_load_mw\n" + "-99,32,1\n" * 60)
    assert too_big.status_code == 413
    assert "the limit is 400 bytes" in too_big.get_data(as_text=True)


def test_map_cap_is_explained(tmp_path):
    capped = create_app(replace(Settings(), map_max_sites=3)).test_client()
    html = post_sites(capped, CSV.replace("bad1,Bad longitude,-300", "ok2,Two,-90")).get_data(as_text=True)
    assert "The map shows the 3 best-ranked of 3 sites" not in html
    html = post_sites(capped, CSV.replace("bad1,Bad longitude,-300", "ok2,Two,-90").replace(
        "bad2,No load,-80,40,,", "ok3,Three,-80,40,5,")).get_data(as_text=True)  # fmt: skip
    assert "The map shows the 3 best-ranked of 4 sites (map_max_sites)" in html  # in the map legend
    assert re.search(r'id="gm-map-note">The map shows the 3 best-ranked of 4\s+sites', html)  # and beside it


def test_methodology_page(client):
    response = client.get("/methodology")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<h1" in html and "How gridmap scores a site" in html and "<table>" in html
    assert all(u.startswith("/assets/") for u in links(html))


def test_templates_autoescape(app):
    with app.test_request_context():
        from flask import render_template_string

        assert render_template_string("{{ x }}", x=XSS) == "&lt;img src=x onerror=alert(1)&gt;"
