"""Row-level validation of candidate sites: every bad-row class names its row and field."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gridmap.config import Settings
from gridmap.errors import InputError
from gridmap.sites import parse_csv_text, parse_geojson, parse_records, read_sites

HEADER = "site_id,name,lon,lat,it_load_mw,pue,load_factor\n"


def errors_of(text: str) -> list[tuple[int, str]]:
    return [(e.row, e.field) for e in parse_csv_text(HEADER + text).errors]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("a,A,-200,30,10,,", [(1, "lon")]),
        ("a,A,-97,91,10,,", [(1, "lat")]),
        ("a,A,nan,30,10,,", [(1, "lon")]),
        ("a,A,inf,30,10,,", [(1, "lon")]),
        ("a,A,,30,10,,", [(1, "lon")]),
        ("a,A,-97,30,ten,,", [(1, "it_load_mw")]),
        ("a,A,-97,30,0,,", [(1, "it_load_mw")]),
        ("a,A,-97,30,-5,,", [(1, "it_load_mw")]),
        ("a,A,-97,30,,,", [(1, "it_load_mw")]),
        ("a,A,-97,30,10,0.9,", [(1, "pue")]),
        ("a,A,-97,30,10,abc,", [(1, "pue")]),
        ("a,A,-97,30,10,,0", [(1, "load_factor")]),
        ("a,A,-97,30,10,,1.5", [(1, "load_factor")]),
        ("a,A,-97,30,10,,-0.2", [(1, "load_factor")]),
    ],
)
def test_bad_value_names_row_and_field(row, expected):
    assert errors_of(row + "\n") == expected


def test_good_rows_survive_bad_rows_and_keep_their_row_numbers():
    batch = parse_csv_text(HEADER + "a,A,-97,30,10,,\nb,B,-97,30,x,,\nc,C,-90,35,20,1.1,0.5\n")
    assert list(batch.sites["site_id"]) == ["a", "c"]
    assert list(batch.sites["row"]) == [1, 3]
    assert [(e.row, e.field) for e in batch.errors] == [(2, "it_load_mw")]
    assert batch.total_rows == 3


def test_defaults_filled_from_settings():
    batch = parse_csv_text(
        "lon,lat,it_load_mw\n-97,30,10\n", settings=Settings(default_pue=1.5, default_load_factor=0.6)
    )
    site = batch.sites.iloc[0]
    assert (site["pue"], site["load_factor"]) == (1.5, 0.6)
    assert site["site_id"] == "row-1"


def test_duplicate_site_id_names_the_first_row():
    batch = parse_csv_text(HEADER + "a,A,-97,30,10,,\nb,B,-97,30,10,,\na,A2,-97,30,10,,\n")
    (err,) = batch.errors
    assert (err.row, err.field) == (3, "site_id")
    assert "row 1" in err.message


def test_swapped_lon_lat_is_named():
    (err,) = parse_csv_text(HEADER + "a,A,30.5,-97.2,10,,\n").errors
    assert err.field == "lat" and "swapped" in err.message


def test_aliases_longitude_latitude():
    batch = parse_csv_text("Longitude,Latitude,it_load_mw\n-97,30,10\n")
    assert batch.sites[["lon", "lat"]].iloc[0].tolist() == [-97.0, 30.0]


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "empty"), (HEADER, "no data rows"), ("lon,lat\n1,2\n", "it_load_mw"), ("name,it_load_mw\nx,1\n", "lon")],
)
def test_unusable_csv_is_an_input_error(text, needle):
    with pytest.raises(InputError, match=needle):
        parse_csv_text(text)


def test_extra_columns_are_kept():
    batch = parse_csv_text("lon,lat,it_load_mw,owner\n-97,30,10,ACME\n")
    assert batch.sites["owner"].tolist() == ["ACME"]


def feature(geom, **props):
    return {"type": "Feature", "geometry": geom, "properties": props}


def test_geojson_points_and_non_points():
    doc = {"type": "FeatureCollection", "features": [
        feature({"type": "Point", "coordinates": [-97, 30]}, it_load_mw=5, site_id="p"),
        feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, it_load_mw=5),
        feature({"type": "Point", "coordinates": [-97, 30]}, it_load_mw=-1),
    ]}  # fmt: skip
    batch = parse_geojson(doc)
    assert batch.sites["site_id"].tolist() == ["p"]
    assert [(e.row, e.field) for e in batch.errors] == [(2, "geometry"), (3, "it_load_mw")]


def test_geojson_non_wgs84_crs_is_refused():
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:3857"}},
           "features": [feature({"type": "Point", "coordinates": [1e6, 1e6]}, it_load_mw=5)]}  # fmt: skip
    with pytest.raises(InputError, match="EPSG:3857"):
        parse_geojson(doc)


def test_records_must_be_objects():
    with pytest.raises(InputError) as info:
        parse_records([{"lon": 1, "lat": 2, "it_load_mw": 3}, "nope"])
    assert info.value.errors[0].row == 2


@pytest.mark.parametrize("suffix", [".csv", ".geojson", ".parquet"])
def test_file_that_is_not_what_its_extension_says(tmp_path, suffix):
    path = tmp_path / f"sites{suffix}"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    with pytest.raises(InputError):
        read_sites(path)


def test_read_sites_formats_agree(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("site_id,lon,lat,it_load_mw\na,-97,30,10\n")
    gj = tmp_path / "s.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        feature({"type": "Point", "coordinates": [-97, 30]}, site_id="a", it_load_mw=10)]}))  # fmt: skip
    pq = tmp_path / "s.parquet"
    pd.DataFrame({"site_id": ["a"], "lon": [-97.0], "lat": [30.0], "it_load_mw": [10.0]}).to_parquet(pq)
    frames = [read_sites(p).sites[["site_id", "lon", "lat", "it_load_mw"]] for p in (csv, gj, pq)]
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], other, check_dtype=False)


def test_result_named_input_columns_are_kept_under_input_names():
    batch = parse_csv_text("lon,lat,it_load_mw,score,row,region_id\n-97,30,10,55,7,TX\n")
    assert batch.sites[["input_score", "input_row", "input_region_id"]].iloc[0].tolist() == ["55", "7", "TX"]
    assert batch.sites["row"].tolist() == [1]


def test_it_load_beyond_any_grid_is_refused():
    (err,) = parse_csv_text("lon,lat,it_load_mw\n-97,30,5e6\n").errors
    assert err.field == "it_load_mw" and "1,000,000" in err.message
