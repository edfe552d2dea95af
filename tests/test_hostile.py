"""The bad-input matrix: every class of hostile input through every face (API, upload form, CLI).

Each class must get a clear 4xx (API: ``application/problem+json`` with ``errors: [{row, field,
message}]``; upload form: an HTML page listing ``row N, field: message``) or a CLI error on stderr
naming the row and field, and never a 500 or a traceback. ``docs/hardening.md`` is the catalogue
of these classes and what each face answers; keep the two in step.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import select
import socket
import tracemalloc
from dataclasses import dataclass, field, replace
from pathlib import Path

import geopandas as gpd
import psutil
import pytest
import requests
import shapely
from click.testing import CliRunner
from conftest import square_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gunicorn import gunicorn

from gridmap.app import create_app
from gridmap.cli import main
from gridmap.config import Settings
from gridmap.errors import InputError, RegionLayerError
from gridmap.problem import MEDIA_TYPE
from gridmap.scoring import score_sites
from gridmap.sites import parse_csv_text, parse_geojson, parse_records

GOOD = {"site_id": "good", "lon": -99.0, "lat": 31.0, "it_load_mw": 100.0}  # Texas
HEADER = ["site_id", "lon", "lat", "it_load_mw", "pue", "load_factor"]
MB = 1 << 20


@dataclass(frozen=True)
class Bad:
    """One bad value in one field of the site on row ``row`` (the good site, if any, is row 1)."""

    name: str
    values: dict  # field -> value as a JSON value (CSV: its text; GET: its query text)
    field: str
    words: str  # must appear in the row error's message
    csv: dict = field(default_factory=dict)  # CSV/query text where it differs from str(value)
    faces: tuple = ("csv", "json", "geojson", "get")


VALUE_CLASSES = [
    Bad("lon_out_of_range", {"lon": -200}, "lon", "not a longitude in [-180, 180]"),
    Bad("lat_out_of_range", {"lat": 95}, "lat", "not a latitude in [-90, 90]"),
    Bad("swapped_out_of_range", {"lon": 31, "lat": -99}, "lat", "lon and lat look swapped"),
    Bad("swapped_in_range", {"lon": 39, "lat": -77.5}, "lon", "lon=-77.5, lat=39 is in VA: lon and lat look swapped"),
    Bad("lon_nan", {"lon": math.nan}, "lon", "longitude in [-180, 180]", csv={"lon": "nan"}),
    Bad("lat_inf", {"lat": math.inf}, "lat", "not a latitude in [-90, 90]", csv={"lat": "inf"}),
    Bad("lon_minus_inf", {"lon": -math.inf}, "lon", "not a longitude in [-180, 180]", csv={"lon": "-inf"}),
    Bad("lat_overflow", {"lat": 1e400}, "lat", "not a latitude", csv={"lat": "1e400"}),
    Bad("it_load_text", {"it_load_mw": "ten"}, "it_load_mw", "it_load_mw='ten' is not a number > 0"),
    Bad("it_load_negative", {"it_load_mw": -5}, "it_load_mw", "is not a number > 0"),
    Bad("it_load_zero", {"it_load_mw": 0}, "it_load_mw", "is not a number > 0"),
    Bad("it_load_missing", {"it_load_mw": None}, "it_load_mw", "it_load_mw is missing", csv={"it_load_mw": ""}),
    Bad("it_load_boolean", {"it_load_mw": True}, "it_load_mw", "is not a number > 0", faces=("json", "geojson")),
    Bad("it_load_huge_integer", {"it_load_mw": 10**400}, "it_load_mw", "is not a number > 0"),
    Bad("it_load_infinite", {"it_load_mw": math.inf}, "it_load_mw", "is not a number > 0", csv={"it_load_mw": "inf"}),
    Bad("pue_text", {"pue": "abc"}, "pue", "pue='abc' is not a PUE in [1, 5]"),
    Bad("pue_negative", {"pue": -1.2}, "pue", "is not a PUE in [1, 5]"),
    Bad("pue_below_one", {"pue": 0.5}, "pue", "is not a PUE in [1, 5]"),
    Bad("load_factor_text", {"load_factor": "high"}, "load_factor", "load_factor='high' is not a load factor"),
    Bad("load_factor_negative", {"load_factor": -0.5}, "load_factor", "is not a load factor in (0, 1]"),
    Bad("load_factor_above_one", {"load_factor": 1.5}, "load_factor", "is not a load factor in (0, 1]"),
    Bad(
        "load_factor_nan",
        {"load_factor": math.nan},
        "load_factor",
        "load factor",
        csv={"load_factor": "NaN"},
        faces=("csv", "get"),
    ),  # fmt: skip
]


def bad_site(case: Bad) -> dict:
    return {"site_id": "bad", "lon": -97.0, "lat": 32.0, "it_load_mw": 50.0} | case.values


def csv_cell(case: Bad, name: str, value) -> str:
    if name in case.csv:
        return case.csv[name]
    return "" if value is None else str(value)


def csv_text(case: Bad, *, with_good: bool) -> str:
    def cell(name: str, value) -> str:
        return "" if value is None else str(value)

    good = [",".join(cell(h, GOOD.get(h)) for h in HEADER)] if with_good else []
    site = bad_site(case)
    bad = [",".join(csv_cell(case, h, site[h]) if h in case.values else cell(h, site.get(h)) for h in HEADER)]
    return ",".join(HEADER) + "\n" + "".join(line + "\n" for line in good + bad)


def feature(site: dict) -> dict:
    props = {k: v for k, v in site.items() if k not in ("lon", "lat")}
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [site["lon"], site["lat"]]},
            "properties": props}  # fmt: skip


def geojson_text(case: Bad, *, with_good: bool) -> str:
    rows = ([GOOD] if with_good else []) + [bad_site(case)]
    return json.dumps({"type": "FeatureCollection", "features": [feature(r) for r in rows]})


def json_text(case: Bad, *, with_good: bool) -> str:
    return json.dumps(([GOOD] if with_good else []) + [bad_site(case)])


# ---- fixtures and checks ------------------------------------------------------------------------


def problem_of(response, status: int) -> dict:
    """The problem+json body of a response, checked for its RFC 9457 shape."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:500]
    assert response.mimetype == MEDIA_TYPE
    assert "Traceback" not in text
    body = json.loads(text)
    assert {"type", "title", "status", "detail", "errors"} <= set(body) and body["status"] == status
    assert all(set(e) == {"row", "field", "message"} for e in body["errors"])
    return body


def row_error(errors: list[dict], row: int, field_name: str) -> dict:
    hits = [e for e in errors if e["row"] == row and e["field"] == field_name]
    assert hits, f"no error for row {row}, field {field_name}: {errors}"
    return hits[0]


def upload(client, text: str | bytes, filename: str, **form):
    data = text.encode() if isinstance(text, str) else text
    return client.post("/upload", data={"sites": (io.BytesIO(data), filename), **form},
                       content_type="multipart/form-data")  # fmt: skip


def upload_bytes(client, data: bytes, filename: str):
    """POST a multipart form built here: the test client spools a large form to a temporary file it never closes."""
    boundary = "gridmap-test-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="sites"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return client.post("/upload", data=body, content_type=f"multipart/form-data; boundary={boundary}")


def html_of(response, status: int) -> str:
    html = response.get_data(as_text=True)
    assert response.status_code == status, html[-2000:]
    assert response.mimetype == "text/html" and "Traceback" not in html
    return html


def html_row_error(html: str, row: int, field_name: str) -> str:
    found = re.findall(rf"<li>row {row}, {field_name}: ([^<]*)</li>", html)
    assert found, f"no 'row {row}, {field_name}' in the page"
    return found[0]


def unescape(text: str) -> str:
    import html

    return html.unescape(text)


def cli(tmp_path: Path, name: str, content: str | bytes, *extra: str):
    """Run ``gridmap score`` on a file holding ``content``; return (result, output path)."""
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["score", str(path), "-o", str(out), "-q", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result, out


def cli_row_error(result, row: int, field_name: str) -> str:
    found = re.findall(rf"error: row {row}, field {field_name}: (.*)", result.stderr)
    assert found, f"no 'row {row}, field {field_name}' on stderr: {result.stderr}"
    return found[0]


# ---- value classes: one bad value in one field ------------------------------------------------


def cases_for(face: str):
    return [pytest.param(c, id=c.name) for c in VALUE_CLASSES if face in c.faces]


@pytest.mark.parametrize("case", cases_for("csv"))
def test_api_post_csv_alone_is_422(client, case):
    body = problem_of(client.post("/api/v1/score", data=csv_text(case, with_good=False), content_type="text/csv"), 422)
    assert case.words in row_error(body["errors"], 1, case.field)["message"]


@pytest.mark.parametrize("case", cases_for("json"))
def test_api_post_json_alone_is_422(client, case):
    body = problem_of(
        client.post("/api/v1/score", data=json_text(case, with_good=False), content_type="application/json"), 422
    )
    assert case.words in row_error(body["errors"], 1, case.field)["message"]


@pytest.mark.parametrize("case", cases_for("geojson"))
def test_api_post_geojson_alone_is_422(client, case):
    response = client.post(
        "/api/v1/score", data=geojson_text(case, with_good=False), content_type="application/geo+json"
    )
    assert case.words in row_error(problem_of(response, 422)["errors"], 1, case.field)["message"]


@pytest.mark.parametrize("case", cases_for("get"))
def test_api_get_is_422(client, case):
    site = bad_site(case)
    query = {k: csv_cell(case, k, v) if k in case.values else v for k, v in site.items()}
    body = problem_of(client.get("/api/v1/score", query_string=query), 422)
    assert case.words in row_error(body["errors"], 1, case.field)["message"]


@pytest.mark.parametrize("case", cases_for("csv"))
def test_upload_csv_alone_is_400(client, case):
    html = html_of(upload(client, csv_text(case, with_good=False), "sites.csv"), 400)
    assert "none of the 1 sites could be scored" in html
    assert case.words in unescape(html_row_error(html, 1, case.field))


@pytest.mark.parametrize("case", cases_for("geojson"))
def test_upload_geojson_alone_is_400(client, case):
    html = html_of(upload(client, geojson_text(case, with_good=False), "sites.geojson"), 400)
    assert case.words in unescape(html_row_error(html, 1, case.field))


@pytest.mark.parametrize("case", cases_for("csv"))
def test_cli_csv_alone_is_exit_3(tmp_path, case):
    result, out = cli(tmp_path, "sites.csv", csv_text(case, with_good=False))
    assert result.exit_code == 3, result.output
    assert case.words in cli_row_error(result, 1, case.field)
    assert re.search(rf"^1,{case.field},", (tmp_path / "out.errors.csv").read_text(), re.M)


# ---- every class in one file: the good row is scored, every bad row is reported, none is lost ----


def all_in_one(fmt: str) -> tuple[str, list[Bad]]:
    """One input with the good site on row 1 and one row per value class after it."""
    cases = [c for c in VALUE_CLASSES if fmt in c.faces]
    if fmt == "csv":
        good = ",".join(str(GOOD.get(h, "")) for h in HEADER)
        bad = [csv_text(c, with_good=False).splitlines()[1].replace("bad", c.name, 1) for c in cases]
        return "\n".join([",".join(HEADER), good, *bad]) + "\n", cases
    feats = [feature(GOOD)] + [feature(bad_site(c) | {"site_id": c.name}) for c in cases]
    return json.dumps({"type": "FeatureCollection", "features": feats}), cases


def check_all_reported(errors: list[dict], cases: list[Bad]) -> None:
    for row, case in enumerate(cases, start=2):
        assert case.words in row_error(errors, row, case.field)["message"], case.name
    assert {e["row"] for e in errors} == set(range(2, len(cases) + 2))


@pytest.mark.parametrize("fmt", ["csv", "geojson"])
def test_all_classes_in_one_request_api(client, fmt):
    text, cases = all_in_one(fmt)
    kind = "text/csv" if fmt == "csv" else "application/geo+json"
    response = client.post("/api/v1/score", data=text, content_type=kind)
    assert response.status_code == 200, response.get_data(as_text=True)[:1000]
    doc = json.loads(response.get_data())
    assert [f["properties"]["site_id"] for f in doc["features"]] == ["good"]
    assert doc["features"][0]["properties"]["region_id"] == "TX"
    check_all_reported(doc["errors"], cases)
    assert doc["summary"]["rows_with_errors"] == len(cases)
    as_csv = client.post("/api/v1/score?format=csv", data=text, content_type=kind)
    assert as_csv.headers["X-Gridmap-Row-Errors"] == str(len(doc["errors"]))
    assert len(as_csv.get_data(as_text=True).splitlines()) == 2  # header + the good row


@pytest.mark.parametrize("fmt", ["csv", "geojson"])
def test_all_classes_in_one_upload(client, fmt):
    text, cases = all_in_one(fmt)
    html = html_of(upload(client, text, "sites." + fmt), 200)
    assert html.count("data-gm-site=") == 1
    found = [{"row": int(r), "field": f, "message": unescape(m)} for r, f, m in
             re.findall(r"<li>row (\d+), (\w+): ([^<]*)</li>", html)]  # fmt: skip
    check_all_reported(found, cases)


@pytest.mark.parametrize("fmt,engine", [("csv", "memory"), ("csv", "stream"), ("geojson", "memory")])
def test_all_classes_in_one_file_cli(tmp_path, fmt, engine):
    text, cases = all_in_one(fmt)
    result, out = cli(tmp_path, "sites." + fmt, text, "--engine", engine)
    assert result.exit_code == 3, result.output
    for row, case in enumerate(cases, start=2):
        assert case.words in cli_row_error(result, row, case.field), case.name
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == ["site_id", "good"]
    errors = (tmp_path / "out.errors.csv").read_text().splitlines()[1:]
    assert {int(line.split(",")[0]) for line in errors} == set(range(2, len(cases) + 2))


# ---- duplicate ids ----------------------------------------------------------------------------

DUPLICATES = "site_id,lon,lat,it_load_mw\nA1,-99,31,10\nA1,-98,31,10\n a1 ,-97,31,10\nA1 ,-96,31,10\n"


def test_duplicate_ids_everywhere(client, tmp_path):
    # the first use is scored; later ones are row errors naming the first row (ids are trimmed, case kept)
    doc = json.loads(client.post("/api/v1/score", data=DUPLICATES, content_type="text/csv").get_data())
    assert sorted(f["properties"]["site_id"] for f in doc["features"]) == ["A1", "a1"]
    assert row_error(doc["errors"], 2, "site_id")["message"] == "duplicate site_id 'A1' (first used in row 1)"
    assert "first used in row 1" in row_error(doc["errors"], 4, "site_id")["message"]
    records = [{"site_id": 7, "lon": -99, "lat": 31, "it_load_mw": 1}, {"site_id": "7", "lon": -98, "lat": 31,
                                                                         "it_load_mw": 1}]  # fmt: skip
    doc = json.loads(client.post("/api/v1/score", json=records).get_data())
    assert "duplicate site_id '7'" in row_error(doc["errors"], 2, "site_id")["message"]
    html = html_of(upload(client, DUPLICATES, "sites.csv"), 200)
    assert "duplicate site_id" in unescape(html_row_error(html, 2, "site_id"))
    result, _ = cli(tmp_path, "dups.csv", DUPLICATES)
    assert result.exit_code == 3 and "first used in row 1" in cli_row_error(result, 4, "site_id")


# ---- geometry that is not a point, and declared CRS ------------------------------------------

NOT_POINTS = {
    "LineString": {"type": "LineString", "coordinates": [[-99, 31], [-98, 31]]},
    "Polygon": {"type": "Polygon", "coordinates": [[[-99, 31], [-98, 31], [-98, 32], [-99, 31]]]},
    "MultiPoint": {"type": "MultiPoint", "coordinates": [[-99, 31]]},
    "GeometryCollection": {"type": "GeometryCollection", "geometries": []},
}
BROKEN_POINTS = {
    "one_coordinate": ({"type": "Point", "coordinates": [-99]}, "Point coordinates must be [lon, lat]"),
    "coordinates_object": ({"type": "Point", "coordinates": {"x": 1}}, "Point coordinates must be [lon, lat]"),
    "geometry_text": ("POINT(-99 31)", "geometry is str, expected Point"),
}


def collection(*geometries) -> str:
    feats = [feature(GOOD)] + [{"type": "Feature", "geometry": g, "properties": {"it_load_mw": 5}} for g in geometries]
    return json.dumps({"type": "FeatureCollection", "features": feats})


@pytest.mark.parametrize("kind", NOT_POINTS)
def test_geometry_that_is_not_a_point(client, tmp_path, kind):
    text = collection(NOT_POINTS[kind])
    doc = json.loads(client.post("/api/v1/score", data=text, content_type="application/geo+json").get_data())
    assert row_error(doc["errors"], 2, "geometry")["message"] == f"geometry is {kind}, expected Point"
    assert len(doc["features"]) == 1
    alone = json.dumps({"type": "FeatureCollection", "features": json.loads(text)["features"][1:]})
    body = problem_of(client.post("/api/v1/score", data=alone, content_type="application/geo+json"), 422)
    assert row_error(body["errors"], 1, "geometry")
    html = html_of(upload(client, text, "sites.geojson"), 200)
    assert f"geometry is {kind}, expected Point" in html_row_error(html, 2, "geometry")
    result, _ = cli(tmp_path, "sites.geojson", text)
    assert result.exit_code == 3 and "expected Point" in cli_row_error(result, 2, "geometry")


@pytest.mark.parametrize("kind", BROKEN_POINTS)
def test_broken_point_geometry(client, tmp_path, kind):
    geometry, words = BROKEN_POINTS[kind]
    doc = json.loads(
        client.post("/api/v1/score", data=collection(geometry), content_type="application/json").get_data()
    )
    assert words in row_error(doc["errors"], 2, "geometry")["message"]
    result, _ = cli(tmp_path, "sites.geojson", collection(geometry))
    assert result.exit_code == 3 and words in cli_row_error(result, 2, "geometry")


def test_geoparquet_of_lines_names_the_row(tmp_path):
    frame = gpd.GeoDataFrame({"it_load_mw": [1.0, 2.0]}, geometry=[shapely.Point(-99, 31),
                             shapely.LineString([(-99, 31), (-98, 31)])], crs="EPSG:4326")  # fmt: skip
    frame.to_parquet(tmp_path / "lines.parquet")
    result = CliRunner().invoke(main, ["score", str(tmp_path / "lines.parquet"), "-o", str(tmp_path / "o.csv"), "-q",
                                       "--engine", "memory"])  # fmt: skip
    assert result.exit_code == 2 and "LineString is not a Point" in cli_row_error(result, 2, "geometry")


CRS_DECLARATIONS = [
    {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
    {"type": "name", "properties": {"name": "EPSG:26915"}},
    "EPSG:3857",
    [1, 2],
]


@pytest.mark.parametrize("crs", CRS_DECLARATIONS, ids=["urn_3857", "epsg_26915", "text", "list"])
def test_geojson_declaring_a_projected_crs_is_refused(client, tmp_path, crs):
    # easting/northing in metres would land "outside" or, worse, somewhere; refuse and say reproject
    doc = {"type": "FeatureCollection", "crs": crs, "features": [feature(GOOD | {"lon": 500000.0, "lat": 3500000.0})]}
    body = problem_of(client.post("/api/v1/score", json=doc), 422)
    assert "declares crs" in body["detail"] and "reproject first" in body["detail"]
    assert row_error(body["errors"], 0, "crs")
    html = html_of(upload(client, json.dumps(doc), "sites.geojson"), 400)
    assert "declares crs" in unescape(html) and "row 0, crs" in html
    result, out = cli(tmp_path, "sites.geojson", json.dumps(doc))
    assert result.exit_code == 2 and "reproject first" in result.stderr and not out.exists()


@pytest.mark.parametrize("crs", ["urn:ogc:def:crs:OGC:1.3:CRS84", "EPSG:4326"])
def test_geojson_declaring_wgs84_is_accepted(client, crs):
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": crs}},
        "features": [feature(GOOD)],
    }
    response = client.post("/api/v1/score", json=doc)
    assert (
        response.status_code == 200
        and json.loads(response.get_data())["features"][0]["properties"]["region_id"] == "TX"
    )


def test_geoparquet_in_a_projected_crs_is_reprojected_not_misread(tmp_path):
    # a GeoParquet file carries its CRS in its metadata, so it can be honoured rather than refused
    frame = gpd.GeoDataFrame({"site_id": ["tx"], "it_load_mw": [10.0]}, geometry=[shapely.Point(-99, 31)],
                             crs="EPSG:4326").to_crs("EPSG:3083")  # fmt: skip
    frame.to_parquet(tmp_path / "tx.parquet")
    out = tmp_path / "o.csv"
    result = CliRunner().invoke(main, ["score", str(tmp_path / "tx.parquet"), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    row = out.read_text().splitlines()[1].split(",")
    assert row[0] == "tx" and float(row[2]) == pytest.approx(-99) and "TX" in row


# ---- whole-input problems: malformed, empty, wrong type ---------------------------------------


@dataclass(frozen=True)
class Whole:
    """An input that is unusable as a whole; ``core`` words are what the upload form and the CLI say."""

    name: str
    body: str | bytes
    kind: str  # API Content-Type
    status: int  # API status
    api: str  # words in the API problem's detail
    core: str | None  # words in the upload page and on the CLI's stderr; None: not a file the form/CLI reads
    suffix: str = ".csv"


WHOLE_INPUT = [
    Whole("csv_unterminated_quote", 'site_id,lon,lat,it_load_mw\n"a,-99,31,1\n', "text/csv", 422,
          "EOF inside string starting at row 1", "not a readable CSV file"),
    Whole("csv_first_row_too_long", "lon,lat,it_load_mw\n-99,31,1,7\n-98,31,1\n", "text/csv", 422,
          "data row 1 has more fields than the header", "data row 1 has more fields than the header"),
    Whole("csv_later_row_too_long", "lon,lat,it_load_mw\n-99,31,1\n-98,31,1,7\n", "text/csv", 422,
          "Expected 3 fields in line 3, saw 4", "Expected 3 fields in line 3, saw 4"),
    Whole("csv_not_utf8", b"lon,lat,it_load_mw\n\xff\xfe,1,1\n", "text/csv", 422, "'utf-8' codec can't decode",
          "not a readable CSV file: 'utf-8' codec can't decode"),
    Whole("csv_binary", b"\x00\x01\x1b[2JPK\x03\x04" * 20, "text/csv", 422, "missing required column(s)",
          "missing required column(s) lon, lat, it_load_mw; columns found: ???[2jpk"),
    Whole("csv_missing_columns", "name,lat\nx,31\n", "text/csv", 422, "missing required column(s) lon, it_load_mw",
          "missing required column(s) lon, it_load_mw; columns found: name, lat"),
    Whole("csv_header_only", "lon,lat,it_load_mw\n", "text/csv", 422, "no sites", "no sites: the input has no data"),
    Whole("csv_alias_twice", "lon,longitude,lat,it_load_mw\n-99,-99,31,1\n", "text/csv", 422, "given twice",
          "column 'lon' is given twice"),
    Whole("empty", "", "text/csv", 400, "the request body is empty", "no sites: the CSV is empty"),
    Whole("json_malformed", '{"type": "FeatureCollection", "features": [', "application/json", 400,
          "not valid JSON: Expecting value: line 1 column 44", "not valid JSON: Expecting value", ".geojson"),
    Whole("json_trailing_garbage", '[{"lon": -99, "lat": 31, "it_load_mw": 1}] x', "application/json", 400,
          "not valid JSON: Extra data", "not valid JSON: Extra data", ".geojson"),
    Whole("json_nested_too_deep", "[" * 50_000 + "]" * 50_000, "application/json", 400, "nested too deeply",
          "not valid JSON: nested too deeply", ".geojson"),
    Whole("json_integer_over_4300_digits", '[{"lon": -99, "lat": 31, "it_load_mw": 1' + "0" * 5000 + "}]",
          "application/json", 400, "Exceeds the limit (4300 digits)", "not valid JSON: Exceeds the limit (4300 digits)",
          ".geojson"),
    Whole("json_scalar", "42", "application/json", 422, "must be a GeoJSON FeatureCollection",
          "expected a GeoJSON FeatureCollection or Feature of Point sites", ".geojson"),
    Whole("json_null", "null", "application/json", 422, "must be a GeoJSON FeatureCollection",
          "expected a GeoJSON FeatureCollection or Feature of Point sites", ".geojson"),
    Whole("whitespace_only", " \n\t\n", "application/json", 400, "the request body is empty",
          "not valid JSON: Expecting value", ".geojson"),
    Whole("json_list_of_numbers", "[1, 2]", "application/json", 422, "each site must be a JSON object", None),
    Whole("json_empty_list", "[]", "application/json", 422, "no sites", None),
    Whole("json_unknown_member", '{"sites": [], "colour": 1}', "application/json", 422, "member 'colour'", None),
    Whole("geojson_features_a_number", '{"type": "FeatureCollection", "features": -7275633}', "application/geo+json",
          422, "no 'features' list", "FeatureCollection has no 'features' list", ".geojson"),
    Whole("json_sites_not_a_list", '{"sites": "x"}', "application/json", 422, "must be a GeoJSON FeatureCollection",
          None),
    Whole("geojson_empty_collection", '{"type": "FeatureCollection", "features": []}', "application/geo+json", 422,
          "no sites", "no sites: the GeoJSON FeatureCollection has no features", ".geojson"),
    Whole("geojson_features_not_a_list", '{"type": "FeatureCollection", "features": {}}', "application/geo+json", 422,
          "no 'features' list", "FeatureCollection has no 'features' list", ".geojson"),
    Whole("geojson_wrong_type", '{"type": "Polygon", "coordinates": []}', "application/geo+json", 422,
          "must be a GeoJSON FeatureCollection", "expected a GeoJSON FeatureCollection", ".geojson"),
    Whole("geojson_features_not_objects", '{"type": "FeatureCollection", "features": [1, "x"]}',
          "application/geo+json", 422, "no feature is a usable Point site", "no feature is a usable Point site",
          ".geojson"),
]  # fmt: skip
FILE_CASES = [pytest.param(c, id=c.name) for c in WHOLE_INPUT if c.core]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in WHOLE_INPUT])
def test_whole_input_problems_api(client, case):
    response = client.post("/api/v1/score", data=case.body, content_type=case.kind)
    problem = problem_of(response, case.status)
    assert case.api in problem["detail"] + json.dumps(problem["errors"])


@pytest.mark.parametrize("case", FILE_CASES)
def test_whole_input_problems_upload(client, case):
    html = html_of(upload(client, case.body, "sites" + case.suffix), 400)
    message = unescape(re.search(r'id="gm-message">([^<]*)<', html).group(1))
    assert case.core in message


@pytest.mark.parametrize("case", FILE_CASES)
def test_whole_input_problems_cli(tmp_path, case):
    result, out = cli(tmp_path, "sites" + case.suffix, case.body)
    assert result.exit_code == 2, result.output
    assert not out.exists() and not (tmp_path / "out.errors.csv").exists()
    last = result.stderr.strip().splitlines()[-1]
    assert case.core in last and last.startswith("Error: ")


def test_first_row_too_long_does_not_shift_the_columns(client):
    # before the fix pandas made the first two fields an index and every row's values moved one column left
    text = "site_id,lon,lat,it_load_mw,pue\nA,-99,31,100,1.2,junk\nB,-98,31,50,1.2\n"
    body = problem_of(client.post("/api/v1/score", data=text, content_type="text/csv"), 422)
    assert row_error(body["errors"], 1, "")["message"] == "the row has more fields than the header"


@pytest.mark.parametrize(
    "kind,status",
    [("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("application/xml", 415),
     ("multipart/form-data; boundary=x", 415), (None, 415), ("text/csv; charset=latin-1", 422)],
)  # fmt: skip
def test_wrong_content_type_is_415_naming_the_accepted_types(client, kind, status):
    headers = {"Content-Type": kind} if kind else {}
    response = client.post("/api/v1/score", data="lon,lat,it_load_mw\n-99,31,1\n".encode("utf-16"), headers=headers)
    body = problem_of(response, status)
    if status == 415:
        assert "application/json, application/geo+json or text/csv" in body["detail"]


def test_upload_wrong_file_type_and_missing_file(client, tmp_path):
    html = html_of(upload(client, "lon,lat,it_load_mw\n-99,31,1\n", "sites.xlsx"), 400)
    assert "unknown file type &#39;.xlsx&#39;" in html
    html = html_of(upload(client, "lon,lat,it_load_mw\n-99,31,1\n", "sites"), 400)
    assert "unknown file type &#39;(none)&#39;" in html
    html = html_of(client.post("/upload", data={}, content_type="multipart/form-data"), 400)
    assert "choose a CSV or GeoJSON file" in html
    html = html_of(client.post("/upload", data="lon,lat\n", content_type="text/csv"), 400)
    assert "choose a CSV or GeoJSON file" in html
    result, _ = cli(tmp_path, "sites.xlsx", "lon,lat,it_load_mw\n-99,31,1\n")
    assert result.exit_code == 2 and "unknown sites format '.xlsx'" in result.stderr


# ---- too large: 100 MB bodies and 1,000,000 sites are refused before parsing -------------------


class ZeroStream(io.RawIOBase):
    """A request body of ``size`` spaces, generated as it is read; counts the bytes read."""

    def __init__(self, size: int):
        self.size, self.read_bytes = size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b" " * n
        self.read_bytes += n
        return n


def raw_body(stream: io.RawIOBase, kind: str, length: int) -> dict:
    """WSGI environ entries that hand the app a body stream as a server would, with its Content-Length."""
    return {"wsgi.input": stream, "CONTENT_LENGTH": str(length), "CONTENT_TYPE": kind}


@pytest.mark.parametrize("path,kind", [("/api/v1/score", "application/json"), ("/api/v1/score", "text/csv"),
                                       ("/upload", "multipart/form-data; boundary=xyz")])  # fmt: skip
def test_100_mb_body_is_413_without_reading_it(client, path, kind):
    stream = ZeroStream(100 * MB)
    response = client.post(path, environ_overrides=raw_body(stream, kind, 100 * MB))
    assert response.status_code == 413
    assert stream.read_bytes == 0  # refused from the Content-Length alone
    text = unescape(response.get_data(as_text=True))
    assert "104,857,600 bytes" in text or "104857600 bytes" in text
    if path.startswith("/api/"):
        assert "20000000" in problem_of(response, 413)["detail"]


def post_100_mb(port: int, path: str, kind: str, *, chunked: bool) -> tuple[int, bytes]:
    """Stream a generated 100 MB body to a real server until it answers; return (bytes sent, reply)."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {100 * MB}\r\n\r\n"
    piece = b" " * (256 * 1024)
    sent, reply = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            # before the first body byte, give the server a moment to answer from the headers alone
            while sent < 100 * MB and not select.select([sock], [], [], 0 if sent else 2.0)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
        with contextlib.suppress(ConnectionResetError):
            reply = sock.recv(65536)
    return sent, reply


def workers_rss(proc) -> int:
    return max(child.memory_info().rss for child in psutil.Process(proc.pid).children())


@pytest.mark.server
@pytest.mark.slow
def test_100_mb_against_gunicorn_is_413_and_the_workers_do_not_balloon():
    with gunicorn(workers=1) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        assert requests.get(url + "/upload", timeout=30).status_code == 200  # build the page cache first
        before = workers_rss(proc)
        for path, kind in [("/api/v1/score", "text/csv"), ("/upload", "multipart/form-data; boundary=x")]:
            sent, reply = post_100_mb(port, path, kind, chunked=False)
            assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
            assert sent == 0  # answered from the Content-Length header alone
            sent, reply = post_100_mb(port, path, kind, chunked=True)
            # no length to check first: refused once max_body_bytes (20 MB) have been read
            assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
            assert sent < 60 * MB
        growth = workers_rss(proc) - before
        print(f"worker RSS growth after four 100 MB bodies: {growth / MB:.1f} MB")
        assert growth < 64 * MB, f"worker memory grew by {growth / MB:.0f} MB"


def million_csv() -> bytes:
    return b"lon,lat,it_load_mw\n" + b"-99,31,1\n" * 1_000_000  # 9 MB: under the byte limit


def test_a_million_sites_are_413_before_parsing(client):
    body = million_csv()
    tracemalloc.start()
    try:
        api = client.post("/api/v1/score", data=body, content_type="text/csv")
        form = upload_bytes(client, body, "million.csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "1000000 sites is more than the limit of 100000" in problem_of(api, 413)["detail"]
    assert "the file has 1,000,000 sites; one upload may score at most 100,000" in html_of(form, 413)
    # parsing a million rows into a frame takes hundreds of MB; the body itself is 9 MB (plus copies in the form parser)
    assert peak < 80 * MB, peak


def test_a_million_sites_as_json_are_413_from_the_content_length(client):
    # even the tersest JSON site is over 20 bytes, so a million of them break the byte limit first
    body = b"[" + b'{"lon":-99,"lat":31,"it_load_mw":1},' * 1_000_000
    stream = ZeroStream(len(body))
    assert problem_of(
        client.post("/api/v1/score", environ_overrides=raw_body(stream, "application/json", len(body))), 413
    )
    assert stream.read_bytes == 0


def test_many_geojson_features_under_the_byte_limit_are_413_before_scoring():
    small = create_app(replace(Settings(), max_sites=10)).test_client()
    doc = {"type": "FeatureCollection", "features": [feature(GOOD | {"site_id": str(i)}) for i in range(11)]}
    assert "11 sites is more than the limit of 10" in problem_of(small.post("/api/v1/score", json=doc), 413)["detail"]
    html = html_of(upload(small, json.dumps(doc), "s.geojson"), 413)
    assert "the file has 11 sites" in html


# ---- other API routes: parameters and paths ----------------------------------------------------


@pytest.mark.parametrize(
    "url,status,words",
    [("/api/v1/regions/XX", 404, "unknown region_id 'XX'"),
     ("/api/v1/regions/%3Cscript%3E", 404, "unknown region_id"),
     ("/api/v1/regions?bbox=1,2,3", 400, "bbox"),
     ("/api/v1/regions?bbox=nan,0,1,1", 400, "bbox"),
     ("/api/v1/regions?bbox=-10,50,10,40", 400, "minlat <= maxlat"),
     ("/api/v1/regions?geometry=wkt", 400, "geometry='wkt' is not allowed"),
     ("/api/v1/score?lon=-99&lat=31&it_load_mw=1&format=xml", 400, "format='xml'"),
     ("/api/v1/score?lon=-99&lat=31&it_load_mw=1&weights=renewable=-1", 422, "renewable"),
     ("/api/v1/score?lon=-99&lat=31&it_load_mw=1&w_speed=1", 422, "w_speed"),
     ("/api/v1/score?lon=-99&lat=31", 422, "missing required column(s) it_load_mw"),
     ("/api/v1/score", 422, "missing required column"),
     ("/ogc/collections/nope", 404, ""),
     ("/ogc/collections/regions/items?limit=-1", 400, "limit"),
     ("/ogc/collections/regions/items?limit=abc", 400, "limit"),
     ("/ogc/collections/regions/items/ZZ", 404, ""),
     ("/api/v1/nothing-here", 404, ""),
     ("/api/v1/../../etc/passwd", 404, "")],
)  # fmt: skip
def test_other_routes_answer_bad_parameters_with_a_problem(client, url, status, words):
    body = problem_of(client.get(url), status)
    assert words in body["detail"]


def test_wrong_method_is_405_problem_with_allow(client):
    response = client.delete("/api/v1/score")
    problem_of(response, 405)
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]


# ---- region layers: missing columns, invalid polygons, no CRS ---------------------------------


def bowtie_frame() -> gpd.GeoDataFrame:
    frame = square_frame()
    frame.loc[0, "geometry"] = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    return frame


def write_layer(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A broken region layer of one kind; returns its path and the words the error must contain."""
    if kind == "missing_columns":
        path = tmp_path / "nocols.geojson"
        square_frame().drop(columns=["co2_kg_per_mwh", "retail_sales_mwh"]).to_file(path)
        return path, "missing required columns co2_kg_per_mwh, retail_sales_mwh"
    if kind == "invalid_polygon":
        path = tmp_path / "bowtie.gpkg"
        bowtie_frame().to_file(path)
        return path, "region 'A' has invalid geometry (Self-intersection"
    if kind == "no_crs":
        path = tmp_path / "nocrs.parquet"
        square_frame().set_crs(None, allow_override=True).to_parquet(path)
        return path, "layer has no CRS"
    if kind == "truncated_gpkg":
        path = tmp_path / "corrupt.gpkg"
        square_frame().to_file(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, "cannot read region layer"
    if kind == "not_a_layer":
        path = tmp_path / "garbage.gpkg"
        path.write_bytes(b"this is not a GeoPackage " * 100)
        return path, "not recognized as being in a supported file format"
    if kind == "points_not_polygons":
        path = tmp_path / "points.geojson"
        square_frame().assign(
            geometry=[shapely.Point(0.5, 0.5), shapely.Point(1.5, 0.5), shapely.Point(0.5, 2.5)]
        ).to_file(path)
        return path, "has no polygon geometry"
    if kind == "text_figures":
        path = tmp_path / "text.geojson"
        square_frame().assign(co2_kg_per_mwh=["lots", "500", "1"]).to_file(path)
        return path, "column co2_kg_per_mwh row 1 is not a finite number: 'lots'"
    if kind == "duplicate_ids":
        path = tmp_path / "dups.geojson"
        square_frame().assign(region_id=["A", "A", "C"]).to_file(path)
        return path, "duplicate region_id 'A'"
    path = tmp_path / "nowhere.gpkg"
    return path, "does not exist"


LAYER_KINDS = ["missing_columns", "invalid_polygon", "no_crs", "truncated_gpkg", "not_a_layer", "points_not_polygons",
               "text_figures", "duplicate_ids", "missing_file"]  # fmt: skip


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_bad_region_layer_fails_app_start_naming_the_file(tmp_path, kind):
    path, words = write_layer(tmp_path, kind)
    with pytest.raises(RegionLayerError) as caught:
        create_app(Settings(regions_path=path, display_regions_path=None))
    assert words in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("where", ["group", "command"])
def test_bad_region_layer_is_cli_exit_2_naming_the_file(tmp_path, kind, where):
    path, words = write_layer(tmp_path, kind)
    sites = tmp_path / "sites.csv"
    sites.write_text("lon,lat,it_load_mw\n0.5,0.5,1\n")
    out = tmp_path / "out.csv"
    args = ["score", str(sites), "-o", str(out), "-q"]
    args = ["--regions", str(path), *args] if where == "group" else [*args, "--regions", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert words in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.output and not out.exists()
    regions = CliRunner().invoke(main, ["regions", "--regions", str(path)])
    assert regions.exit_code == 2 and words in regions.stderr


# ---- fuzz: any text or JSON is either scored or refused with an InputError, never anything else ----

CELLS = st.sampled_from([
    "", " ", "-99", "31", "1e400", "nan", "-inf", "0", "1.5", "abc", "=1+1", '"', '""', "'", "\\", ",", "\t",
    "\x00", "é", "1,5", "TRUE", "None", "0x10", "١٢", "1_000", "+5", ".5", "5.",
])  # fmt: skip
HEADERS = st.lists(
    st.sampled_from([*HEADER, "longitude", "latitude", "x", "y", "lon ", "LAT", "", "extra"]), max_size=8
)
KEYS = st.sampled_from([*HEADER, "type", "features", "geometry", "coordinates", "properties", "crs", "Point", "x"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | CELLS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check_accounted(batch, squares) -> None:
    result = score_sites(batch, squares)
    rows = set(result.frame["row"].tolist()) | {e.row for e in result.errors}
    assert rows == set(range(1, batch.total_rows + 1))


@FUZZ
@given(header=HEADERS, rows=st.lists(st.lists(CELLS, max_size=9), max_size=6))
def test_fuzzed_csv_is_scored_or_refused(squares, header, rows):
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    try:
        batch = parse_csv_text(text)
    except InputError:
        return
    check_accounted(batch, squares)


@FUZZ
@given(doc=JSON_VALUES)
def test_fuzzed_json_is_scored_or_refused(squares, doc):
    try:
        batch = parse_records(doc) if isinstance(doc, list) else parse_geojson(doc)
    except InputError:
        return
    check_accounted(batch, squares)


@FUZZ
@given(doc=JSON_VALUES, kind=st.sampled_from(["application/json", "application/geo+json"]))
def test_fuzzed_json_bodies_are_never_5xx(client, doc, kind):
    response = client.post("/api/v1/score", data=json.dumps(doc), content_type=kind)
    assert response.status_code < 500, response.get_data(as_text=True)
