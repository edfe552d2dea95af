"""Region layers: the committed default layer against its figures, and bad user layers."""

from __future__ import annotations

import json
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gridmap.errors import NotFoundError, RegionLayerError
from gridmap.regions import REQUIRED_COLUMNS, load_regions
from tests.conftest import ROOT, square_frame

SHARED = ROOT.parent / "shared" / "data"


def test_default_layer_shape(us_layer):
    frame = us_layer.frame
    assert len(frame) == 51 and frame.crs.to_epsg() == 4326
    assert frame["region_id"].is_unique and "DC" in set(frame["region_id"])
    assert frame.geometry.is_valid.all()
    assert us_layer.data_year == 2023
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)


def test_display_copy_is_simpler_but_same_regions(us_layer):
    assert list(us_layer.display["region_id"]) == list(us_layer.frame["region_id"])
    full = shapely.get_num_coordinates(us_layer.frame.geometry.values).sum()
    simple = shapely.get_num_coordinates(us_layer.display.geometry.values).sum()
    assert simple < full / 3


def test_committed_layer_matches_the_figures_table(us_layer):
    figures = pd.read_csv(ROOT / "data" / "figures_2023.csv", dtype={"state_fips": str}).set_index("region_id")
    layer = us_layer.figures.set_index("region_id")
    for col in figures.columns:
        pd.testing.assert_series_equal(layer[col], figures[col], check_names=False, check_dtype=False)


@pytest.mark.skipif(not (SHARED / "states_2023.csv").exists(), reason="../shared/data not beside the checkout")
def test_figures_table_matches_the_published_compilation():
    published = pd.read_csv(SHARED / "states_2023.csv").set_index("state").drop(index="US")
    ours = pd.read_csv(ROOT / "data" / "figures_2023.csv").set_index("region_id")
    meta = json.loads((ROOT / "data" / "layer.json").read_text())
    for col, info in meta["columns"].items():
        if col in ("region_id", "region_name"):
            continue
        np.testing.assert_allclose(ours[col], published.loc[ours.index, info["source_column"]], err_msg=col)


def test_every_figure_column_has_unit_and_source():
    meta = json.loads((ROOT / "data" / "layer.json").read_text())
    figures = pd.read_csv(ROOT / "data" / "figures_2023.csv")
    for col in figures.columns:
        if col in ("state_fips", "data_year"):
            continue
        assert meta["columns"][col]["source"], col
    assert meta["data_year"] == 2023 and len(meta["sources"]) >= 4


def test_metadata_travels_inside_the_geoparquet(us_layer):
    import pyarrow.parquet as pq

    kv = pq.read_schema(ROOT / "data" / "regions.parquet").metadata
    assert json.loads(kv[b"gridmap"])["name"] == us_layer.name


def test_unknown_region(us_layer):
    assert us_layer.region("VA")["region_name"] == "Virginia"
    with pytest.raises(NotFoundError, match="ZZ"):
        us_layer.region("ZZ")


def write(frame, tmp_path, name="layer.geojson"):
    path = tmp_path / name
    frame.to_file(path)
    return path


def test_missing_columns_are_named(tmp_path):
    path = write(square_frame().drop(columns=["price_cents_per_kwh", "summer_capacity_mw"]), tmp_path)
    with pytest.raises(RegionLayerError, match="price_cents_per_kwh, summer_capacity_mw"):
        load_regions(path)


def test_no_crs_is_an_error(tmp_path):
    path = tmp_path / "nocrs.parquet"
    square_frame().set_crs(None, allow_override=True).to_parquet(path)
    with pytest.raises(RegionLayerError, match="no CRS"):
        load_regions(path)


def test_projected_layer_is_reprojected(tmp_path, squares):
    path = write(square_frame().to_crs("EPSG:3857"), tmp_path, "merc.gpkg")
    layer = load_regions(path)
    assert layer.frame.crs.to_epsg() == 4326
    assert layer.frame.geometry.iloc[0].equals_exact(squares.frame.geometry.iloc[0], 1e-9)


def test_invalid_polygon_is_named(tmp_path):
    frame = square_frame()
    frame.loc[1, "geometry"] = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])  # bow-tie
    with pytest.raises(RegionLayerError, match="'B' has invalid geometry"):
        load_regions(write(frame, tmp_path))


def test_text_in_a_figure_column_is_named(tmp_path):
    frame = square_frame()
    frame["co2_kg_per_mwh"] = frame["co2_kg_per_mwh"].astype(object)
    frame.loc[0, "co2_kg_per_mwh"] = "lots"
    with pytest.raises(RegionLayerError, match="co2_kg_per_mwh row 1"):
        load_regions(write(frame, tmp_path))


def test_duplicate_ids_and_points(tmp_path):
    frame = square_frame()
    frame.loc[2, "region_id"] = "A"
    with pytest.raises(RegionLayerError, match="duplicate region_id 'A'"):
        load_regions(write(frame, tmp_path))
    points = gpd.GeoDataFrame(
        square_frame().drop(columns="geometry"), geometry=gpd.points_from_xy([0, 1, 2], [0, 1, 2]), crs=4326
    )
    with pytest.raises(RegionLayerError, match="no polygon geometry"):
        load_regions(write(points, tmp_path, "points.geojson"))


@pytest.mark.parametrize("content", [b"", b"not a geo file", b'{"type": "FeatureCollection"'])
def test_corrupt_layer_file(tmp_path, content):
    path = tmp_path / "corrupt.gpkg"
    path.write_bytes(content)
    with pytest.raises(RegionLayerError, match="cannot read"):
        load_regions(path)


def test_missing_file(tmp_path):
    with pytest.raises(RegionLayerError, match="does not exist"):
        load_regions(tmp_path / "nope.gpkg")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # GDAL's shp name laundering
@pytest.mark.parametrize("ext", ["geojson", "gpkg", "shp", "parquet"])
def test_every_layer_format_loads(tmp_path, ext):
    frame = square_frame()
    path = tmp_path / f"squares.{ext}"
    if ext == "parquet":
        frame.to_parquet(path)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Column names longer than 10", UserWarning)  # shp truncates
            frame.to_file(path)
    layer = load_regions(path)
    assert list(layer.frame["region_id"]) == ["A", "B", "C"]
    assert layer.meta["name"] == "squares"


def test_sidecar_metadata_names_the_layer(tmp_path):
    path = write(square_frame(), tmp_path, "subregions.gpkg")
    path.with_name(path.name + ".meta.json").write_text(json.dumps({"name": "My subregions", "data_year": 2022}))
    layer = load_regions(path)
    assert (layer.name, layer.data_year) == ("My subregions", 2022)
    path.with_name(path.name + ".meta.json").write_text("{not json")
    with pytest.raises(RegionLayerError, match="not valid JSON"):
        load_regions(path)
