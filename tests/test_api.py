"""The /api/v1 endpoints on the real default layer, through the Flask test client."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gridmap.app import create_app
from gridmap.config import METHOD_VERSION, Settings
from gridmap.problem import MEDIA_TYPE

TEXAS = {"lon": -99.0, "lat": 31.0, "it_load_mw": 100}


def problem_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == MEDIA_TYPE
    body = json.loads(response.get_data())
    assert {"type", "title", "status", "detail", "errors"} <= set(body) and body["status"] == status
    return body


def geojson_of(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/geo+json"
    return json.loads(response.get_data())


# ---- /regions ----------------------------------------------------------------------------------


def test_regions_default_is_simplified_with_figures_and_provenance(client, app):
    doc = geojson_of(client.get("/api/v1/regions"))
    layer = app.extensions["gridmap"].layer
    assert doc["gridmap"]["layer"] == layer.name and doc["gridmap"]["data_year"] == 2023
    assert doc["gridmap"]["method_version"] == METHOD_VERSION
    assert len(doc["features"]) == 51 == doc["numberMatched"]
    tx = next(f for f in doc["features"] if f["id"] == "TX")
    assert tx["properties"]["region_name"] == "Texas"
    assert tx["properties"]["co2_kg_per_mwh"] == pytest.approx(float(layer.region("TX")["co2_kg_per_mwh"]))
    assert tx["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_regions_geometry_modes(client):
    simplified = client.get("/api/v1/regions").get_data()
    full = client.get("/api/v1/regions?geometry=full").get_data()
    none = geojson_of(client.get("/api/v1/regions?geometry=none"))
    assert len(full) > len(simplified) > len(json.dumps(none))
    assert all(f["geometry"] is None for f in none["features"])


def test_regions_bbox_filters_by_geometry(client):
    doc = geojson_of(client.get("/api/v1/regions?geometry=none&bbox=-100,30,-99,31"))
    assert [f["id"] for f in doc["features"]] == ["TX"]
    east = {f["id"] for f in geojson_of(client.get("/api/v1/regions?geometry=none&bbox=-75,40,-73,41"))["features"]}
    assert {"NJ", "NY", "PA"} <= east and "TX" not in east


def test_regions_bbox_across_the_antimeridian_finds_alaska(client):
    doc = geojson_of(client.get("/api/v1/regions?geometry=none&bbox=170,50,-170,60"))
    assert [f["id"] for f in doc["features"]] == ["AK"]


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "1,2,3,4,5", "-100,40,-90,30", "-200,0,0,10", "nan,0,1,1", ""])
def test_bad_bbox_is_400_naming_bbox(client, bbox):
    body = problem_of(client.get(f"/api/v1/regions?bbox={bbox}"), 400)
    assert "bbox" in body["detail"]


def test_unknown_geometry_mode_is_400(client):
    assert "simplified" in problem_of(client.get("/api/v1/regions?geometry=round"), 400)["detail"]


def test_one_region_and_unknown_region(client):
    doc = geojson_of(client.get("/api/v1/regions/VA"))
    assert doc["type"] == "Feature" and doc["id"] == "VA" and doc["gridmap"]["data_year"] == 2023
    body = problem_of(client.get("/api/v1/regions/XX"), 404)
    assert "'XX'" in body["detail"]


# ---- GET /score ----------------------------------------------------------------------------------


def test_get_score_returns_one_scored_feature(client):
    doc = geojson_of(client.get("/api/v1/score", query_string=TEXAS | {"site_id": "abilene", "name": "Test"}))
    p = doc["properties"]
    assert doc["type"] == "Feature" and doc["id"] == "abilene" and doc["geometry"]["coordinates"] == [-99.0, 31.0]
    assert p["region_id"] == "TX" and p["assignment"] == "inside" and p["name"] == "Test"
    assert p["facility_load_mw"] == pytest.approx(130.0) and p["annual_energy_mwh"] == pytest.approx(130 * 0.8 * 8760)
    assert 0 <= p["score"] <= 100 and p["rank"] == 1
    assert doc["gridmap"]["weights"] == {"renewable": 0.3, "carbon": 0.3, "stress": 0.2, "price": 0.2}


def random_sites(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    sites = [
        {"lon": round(float(x), 5), "lat": round(float(y), 5), "it_load_mw": round(float(m), 2)}
        for x, y, m in zip(rng.uniform(-125, -66, n), rng.uniform(24, 50, n), rng.uniform(1, 3000, n), strict=True)
    ]
    # outside every region (ocean), just off the coast (nearest), Alaska, Hawaii, explicit pue/load factor
    sites += [{"lon": -40.0, "lat": 30.0, "it_load_mw": 10}, {"lon": -124.75, "lat": 45.0, "it_load_mw": 50},
              {"lon": -150.0, "lat": 61.2, "it_load_mw": 20}, {"lon": -157.9, "lat": 21.4, "it_load_mw": 300,
              "pue": 1.1, "load_factor": 0.5}, {"lon": 179.9, "lat": 51.8, "it_load_mw": 1e6}]  # fmt: skip
    return sites


@pytest.mark.parametrize("weights", [None, "renewable=1", "carbon=0.5,price=0.5", "stress=2,renewable=1"])
def test_get_score_equals_the_core_for_many_sites(client, weights):
    """The fast single-site path gives the same answer as POST /score (score_sites)."""
    for site in random_sites(40, seed=len(weights or "")):
        query = site | ({"weights": weights} if weights else {})
        fast = geojson_of(client.get("/api/v1/score", query_string=query))
        core = geojson_of(
            client.post("/api/v1/score", json=[site], query_string={"weights": weights} if weights else {})
        )
        expected = core["features"][0]
        assert fast["id"] == expected["id"] and fast["geometry"] == expected["geometry"]
        assert fast["gridmap"] == core["gridmap"]
        assert list(fast["properties"]) == list(expected["properties"])
        for key, value in expected["properties"].items():
            got = fast["properties"][key]
            if isinstance(value, float) and got is not None:
                assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12), (site, key, got, value)
            else:
                assert got == value, (site, key, got, value)


def test_get_score_weights_as_single_parameters(client):
    base = geojson_of(client.get("/api/v1/score", query_string=TEXAS | {"weights": "renewable=1"}))
    single = geojson_of(client.get("/api/v1/score", query_string=TEXAS | {"weights": "renewable=1", "w_price": "1"}))
    assert single["gridmap"]["weights"] == {"renewable": 1.0, "carbon": 0.0, "stress": 0.0, "price": 1.0}
    assert base["properties"]["score"] == pytest.approx(100 * base["properties"]["score_renewable"])
    only_w = geojson_of(client.get("/api/v1/score", query_string=TEXAS | {"w_carbon": "0.9"}))
    assert only_w["gridmap"]["weights"] == {"renewable": 0.3, "carbon": 0.9, "stress": 0.2, "price": 0.2}


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"lat": 31, "it_load_mw": 1}, None, "lon"),
        ({"lon": -99, "lat": 131, "it_load_mw": 1}, "lat", "latitude"),
        ({"lon": -99, "lat": 31, "it_load_mw": 0}, "it_load_mw", "> 0"),
        ({"lon": -99, "lat": 31, "it_load_mw": "ten"}, "it_load_mw", "'ten'"),
        ({"lon": -99, "lat": 31, "it_load_mw": 1, "pue": 0.5}, "pue", "PUE"),
    ],
)
def test_get_score_bad_site_is_422_with_row_errors(client, query, field, words):
    body = problem_of(client.get("/api/v1/score", query_string=query), 422)
    text = body["detail"] + json.dumps(body["errors"])
    assert words in text
    if field:
        assert body["errors"][0]["row"] == 1 and body["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"weights": "sunshine=1"}, "sunshine"),
        ({"weights": "renewable=-1"}, ">= 0"),
        ({"w_wind": "1"}, "w_wind"),
        ({"weights": "renewable=0"}, "at least one"),
        ({"w_price": "cheap"}, "not a number"),
        ({"w_carbon": "1.3e308"}, "relative"),
        ({"weights": "renewable=1e300"}, "relative"),
    ],
)
def test_bad_weights_are_422_naming_the_weight(client, query, words):
    assert words in problem_of(client.get("/api/v1/score", query_string=TEXAS | query), 422)["detail"]


def test_get_score_as_csv_by_format_or_accept(client):
    for response in (client.get("/api/v1/score", query_string=TEXAS | {"format": "csv"}),
                     client.get("/api/v1/score", query_string=TEXAS, headers={"Accept": "text/csv"})):  # fmt: skip
        assert response.status_code == 200 and response.mimetype == "text/csv"
        header, row = response.get_data(as_text=True).splitlines()
        assert header.startswith("site_id,name,lon,lat,it_load_mw") and "method_version" in header
        assert ",TX,Texas,inside," in row and METHOD_VERSION in row
    assert problem_of(client.get("/api/v1/score", query_string=TEXAS | {"format": "xml"}), 400)


# ---- POST /score ---------------------------------------------------------------------------------


def test_post_json_list_scores_with_cumulative_region_figures(client):
    sites = [
        TEXAS | {"site_id": "a"},
        TEXAS | {"site_id": "b", "lon": -98.0},
        {"lon": -77.5, "lat": 39.0, "it_load_mw": 50},
    ]
    doc = geojson_of(client.post("/api/v1/score", json=sites))
    props = {f["id"]: f["properties"] for f in doc["features"]}
    a, b = props["a"], props["b"]
    assert a["cumulative_demand_growth_share"] == pytest.approx(a["demand_growth_share"] + b["demand_growth_share"])
    tx = next(r for r in doc["regions"] if r["region_id"] == "TX")
    assert tx["sites"] == 2 and tx["annual_energy_mwh"] == pytest.approx(2 * a["annual_energy_mwh"])
    assert tx["cumulative_demand_growth_share"] == pytest.approx(a["cumulative_demand_growth_share"])
    assert doc["errors"] == [] and doc["summary"]["sites"] == 3 and doc["gridmap"]["data_year"] == 2023


def test_post_geojson_feature_collection(client):
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "x", "geometry": {"type": "Point", "coordinates": [-99.0, 31.0]},
         "properties": {"it_load_mw": 200}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
         "properties": {}}]}  # fmt: skip
    doc = geojson_of(client.post("/api/v1/score", data=json.dumps(fc), content_type="application/geo+json"))
    assert [f["id"] for f in doc["features"]] == ["x"]
    assert doc["errors"] == [{"row": 2, "field": "geometry", "message": "geometry is LineString, expected Point"}]


def test_post_csv_with_row_errors_alongside_scored_sites(client):
    text = "site_id,lon,lat,it_load_mw\nok,-99,31,100\nbad,-99,31,-5\nswap,31,-99,10\n"
    doc = geojson_of(client.post("/api/v1/score", data=text, content_type="text/csv"))
    assert [f["id"] for f in doc["features"]] == ["ok"]
    assert [(e["row"], e["field"]) for e in doc["errors"]] == [(2, "it_load_mw"), (3, "lat")]
    assert doc["summary"]["rows_with_errors"] == 2


def test_post_as_csv_reports_row_error_count(client):
    text = "site_id,lon,lat,it_load_mw\nok,-99,31,100\nbad,-99,31,-5\n"
    response = client.post("/api/v1/score?format=csv", data=text, content_type="text/csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["X-Gridmap-Row-Errors"] == "1"
    assert len(response.get_data(as_text=True).splitlines()) == 2


def test_absurd_it_load_is_a_row_error_not_an_overflow(client):
    sites = [TEXAS | {"site_id": "ok"}, TEXAS | {"site_id": "huge", "it_load_mw": 1.7976931348623157e308}]
    doc = geojson_of(client.post("/api/v1/score", json=sites))
    assert [f["id"] for f in doc["features"]] == ["ok"]
    assert doc["errors"][0]["row"] == 2 and doc["errors"][0]["field"] == "it_load_mw"
    body = problem_of(client.get("/api/v1/score", query_string=TEXAS | {"it_load_mw": "2e9"}), 422)
    assert "1,000,000" in body["errors"][0]["message"]


def test_post_weights_in_body_or_query_but_not_both(client):
    body = {"sites": [TEXAS], "weights": {"price": 1}}
    doc = geojson_of(client.post("/api/v1/score", json=body))
    assert doc["gridmap"]["weights"] == {"renewable": 0.0, "carbon": 0.0, "stress": 0.0, "price": 1.0}
    query = geojson_of(client.post("/api/v1/score?weights=price=1", json=[TEXAS]))
    assert query["features"][0]["properties"]["score"] == doc["features"][0]["properties"]["score"]
    assert "both" in problem_of(client.post("/api/v1/score?w_price=1", json=body), 422)["detail"]


def test_post_all_rows_bad_is_422_with_every_row_error(client):
    body = problem_of(client.post("/api/v1/score", json=[{"lon": 500, "lat": 0, "it_load_mw": 1}, {"lon": 0}]), 422)
    assert {(e["row"], e["field"]) for e in body["errors"]} >= {(1, "lon"), (2, "lat"), (2, "it_load_mw")}


@pytest.mark.parametrize(
    ("data", "content_type", "status", "words"),
    [
        ("{not json", "application/json", 400, "not valid JSON"),
        ("", "application/json", 400, "empty"),
        ("   ", "text/csv", 400, "empty"),
        ("lon,lat\n1,2\n", "text/plain", 415, "text/csv"),
        ("[]", None, 415, "missing"),
        ('{"type": "Polygon"}', "application/json", 422, "FeatureCollection"),
        ('{"sites": [], "colour": 1}', "application/json", 422, "colour"),
        ('{"sites": [{"lon": 1, "lat": 1, "it_load_mw": 1}], "weights": 3}', "application/json", 422, "weights"),
        ("[]", "application/json", 422, "no sites"),
        ("a,b\n1,2\n", "text/csv", 422, "missing required column"),
        ("[1, 2]", "application/json", 422, "JSON object"),
        (
            '{"sites": [{"lon": -99, "lat": 31, "it_load_mw": 1}], "weights": {"price": 1e300}}',
            "application/json",
            422,
            "relative",
        ),
        ("[" * 5000 + "]" * 5000, "application/json", 400, "nested too deeply"),
        ('[{"lon": 1, "lat": 1, "it_load_mw": 1' + "0" * 400 + "}]", "application/json", 422, "it_load_mw"),
    ],
)
def test_post_unreadable_bodies(client, data, content_type, status, words):
    response = client.post("/api/v1/score", data=data, content_type=content_type)
    body = problem_of(response, status)
    assert words in body["detail"] + json.dumps(body["errors"])


@pytest.fixture(scope="module")
def small_client(squares_path):
    settings = Settings(regions_path=squares_path, display_regions_path=None, max_sites=3, max_body_bytes=2000)
    return create_app(settings).test_client()


def test_too_many_sites_is_413(small_client):
    sites = [{"lon": 0.5, "lat": 0.5, "it_load_mw": 1, "site_id": str(i)} for i in range(4)]
    assert "limit of 3" in problem_of(small_client.post("/api/v1/score", json=sites), 413)["detail"]
    csv = "lon,lat,it_load_mw\n" + "0.5,0.5,1\n" * 4
    assert (
        "limit of 3" in problem_of(small_client.post("/api/v1/score", data=csv, content_type="text/csv"), 413)["detail"]
    )
    point = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},
        "properties": {"it_load_mw": 1},
    }
    fc = {"type": "FeatureCollection", "features": [point] * 4}
    assert "limit of 3" in problem_of(small_client.post("/api/v1/score", json=fc), 413)["detail"]
    ok = geojson_of(small_client.post("/api/v1/score", json=sites[:3]))
    assert [f["properties"]["region_id"] for f in ok["features"]] == ["A"] * 3


def test_too_large_body_is_413_before_parsing(small_client):
    body = problem_of(
        small_client.post("/api/v1/score", data="[" + " " * 3000 + "]", content_type="application/json"), 413
    )
    assert "2000" in body["detail"]


# ---- /meta, /openapi.json, /docs -----------------------------------------------------------------


def test_meta(client, app):
    meta = client.get("/api/v1/meta").get_json()
    assert meta["layer"] == app.extensions["gridmap"].layer.name and meta["data_year"] == 2023
    assert meta["method_version"] == METHOD_VERSION and len(meta["sources"]) >= 4
    assert meta["default_weights"] == {"renewable": 0.3, "carbon": 0.3, "stress": 0.2, "price": 0.2}
    assert meta["assumptions"]["default_pue"] == 1.3 and meta["limits"]["max_sites"] == 100_000
    assert meta["columns"]["co2_kg_per_mwh"]["unit"] == "kg CO2 / MWh"


def test_openapi_document_lists_every_route(client, app):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "Problem" in doc["components"]["schemas"]
    documented = set(doc["paths"])
    routes = {r.rule.replace("<", "{").replace(">", "}").rstrip("/") for r in app.url_map.iter_rules()
              if r.rule.startswith(("/api", "/ogc"))}  # fmt: skip
    routes = {r.replace("{collection_id}", "{collectionId}").replace("{feature_id}", "{featureId}") for r in routes}
    assert routes == documented
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert "200" in operation["responses"] and "500" in operation["responses"], (path, method)
            for code, response in operation["responses"].items():
                assert "X-Gridmap-Layer" in response["headers"], (path, code)


def test_docs_page_is_plain_html_without_scripts_or_remote_assets(client):
    response = client.get("/api/v1/docs")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "<script" not in html and "src=" not in html and "http://" not in html and "https://" not in html
    for path in (
        "/api/v1/regions",
        "/api/v1/score",
        "/ogc/collections/{collectionId}/items",
        "id='problem-invalid-input'",
    ):
        assert path in html


def test_result_named_input_column_comes_back_as_input_name(client):
    doc = geojson_of(client.post("/api/v1/score", data="lon,lat,it_load_mw,row\n-99,31,5,7\n", content_type="text/csv"))
    props = doc["features"][0]["properties"]
    assert props["input_row"] == "7" and props["row"] == 1
