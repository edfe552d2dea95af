"""Assignment rules on tiny squares, then on the real default layer against geopandas.sjoin."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gridmap.config import Settings
from gridmap.regions import load_regions

KM_DEG = 1 / 111.32  # one km in degrees of latitude (and of longitude at the equator)


@pytest.mark.parametrize(
    ("lon", "lat", "region", "kind"),
    [
        (0.5, 0.5, "A", "inside"),
        (1.5, 0.5, "B", "inside"),
        (0.5, 2.5, "C", "inside"),
        (1.0, 0.5, "A", "boundary"),  # shared edge A|B: lowest region_id wins
        (1.0, 1.0, "A", "boundary"),  # vertex
        (2.0, 0.25, "B", "boundary"),  # outer edge
        (0.5, 1 + 2 * KM_DEG, "A", "nearest"),  # 2 km north of A
        (0.5, 2 - 2 * KM_DEG, "C", "nearest"),  # 2 km south of C
        (2 + 3 * KM_DEG, 0.5, "B", "nearest"),
        (0.5, 1.5, None, "outside"),  # the gap between A and C: 55 km from both
        (-5.0, 0.5, None, "outside"),
        (179.9, 0.5, None, "outside"),  # across the antimeridian
        (-180.0, -90.0, None, "outside"),
        (180.0, 90.0, None, "outside"),
    ],
)
def test_square_rules(squares, lon, lat, region, kind):
    found = squares.assignment_index(Settings()).assign(np.array([lon]), np.array([lat]))
    got = squares.frame["region_id"].iloc[found.region[0]] if found.region[0] >= 0 else None
    assert (got, found.names[0]) == (region, kind)


def test_nearest_distance_is_metric_and_a_setting(squares):
    lon, lat = np.array([0.5]), np.array([1 + 2 * KM_DEG])
    found = squares.assignment_index(Settings()).assign(lon, lat)
    assert found.distance_km[0] == pytest.approx(2.0, rel=0.01)
    tight = squares.assignment_index(Settings(nearest_km=1.0)).assign(lon, lat)
    assert tight.names[0] == "outside" and tight.region[0] == -1


def test_nearest_uses_true_east_west_distance_at_high_latitude(tmp_path):
    """At 60 N a degree of longitude is 55.7 km: 0.05 deg east of the square is 2.8 km, not 5.6 km."""
    frame = gpd.GeoDataFrame(
        {"region_id": ["N"], "region_name": ["north"], "renewable_share": [0.5], "carbon_free_share": [0.5],
         "co2_kg_per_mwh": [1.0], "price_cents_per_kwh": [1.0], "retail_sales_mwh": [1.0],
         "summer_capacity_mw": [1.0], "net_generation_mwh": [1.0]},
        geometry=[shapely.box(10, 59, 11, 61)], crs="EPSG:4326")  # fmt: skip
    path = tmp_path / "north.geojson"
    frame.to_file(path)
    found = load_regions(path).assignment_index(Settings()).assign(np.array([11.05]), np.array([60.0]))
    assert found.names[0] == "nearest"
    assert found.distance_km[0] == pytest.approx(0.05 * 111.32 * math.cos(math.radians(60)), rel=0.01)


def test_empty_input(squares):
    found = squares.assignment_index(Settings()).assign(np.array([]), np.array([]))
    assert len(found.region) == 0


def test_points_on_grid_cell_edges_are_inside(squares):
    """Cell edges are artefacts of the index; a point on one is inside its region, not 'boundary'."""
    index = squares.assignment_index(Settings())
    xs = index.x0 + index.cell * np.arange(1, 8)
    xs = xs[(xs > 0) & (xs < 1)]
    found = index.assign(xs, np.full(len(xs), 0.5))
    assert set(found.names) == {"inside"}


def test_matches_sjoin_on_the_real_layer(us_layer):
    rng = np.random.default_rng(42)
    lon, lat = rng.uniform(-125, -66, 50_000), rng.uniform(24, 50, 50_000)
    found = us_layer.assignment_index(Settings()).assign(lon, lat)
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    joined = gpd.sjoin(points, us_layer.frame[["geometry"]], predicate="within", how="left")
    reference = joined[~joined.index.duplicated()]["index_right"].fillna(-1).astype(int).to_numpy()
    inside = found.names == "inside"
    assert np.array_equal(found.region[inside], reference[inside])
    assert np.array_equal(inside, reference >= 0)


@pytest.fixture(scope="module")
def campuses():
    from tests.conftest import ROOT

    return pd.read_csv(ROOT / "data" / "sample_sites.csv")


def test_real_campuses_land_in_their_state(us_layer, campuses):
    found = us_layer.assignment_index(Settings()).assign(campuses["lon"].to_numpy(), campuses["lat"].to_numpy())
    assert list(us_layer.frame["region_id"].iloc[found.region]) == list(campuses["state"])
    assert set(found.names) == {"inside"}


@pytest.mark.parametrize(
    ("lon", "lat", "kind"),
    [(-40.0, 35.0, "outside"), (-79.38, 43.65, "outside"), (-73.0, 39.0, "outside"), (-106.0, 56.0, "outside")],
    ids=["mid-atlantic", "toronto", "offshore-nj-100km", "canada-interior"],
)
def test_real_layer_outside_points(us_layer, lon, lat, kind):
    found = us_layer.assignment_index(Settings()).assign(np.array([lon]), np.array([lat]))
    assert (found.names[0], found.region[0]) == (kind, -1)


def test_campus_just_off_the_coast_is_kept(us_layer):
    """A point 300 m seaward of the Florida shoreline is 'nearest' FL, not lost."""
    florida = us_layer.region("FL").geometry
    sea = shapely.Point(-80.0, 25.8)
    shore = shapely.shortest_line(florida, sea).coords[0]
    step = np.array(sea.coords[0]) - np.array(shore)
    step = step / np.hypot(step[0] * math.cos(math.radians(shore[1])), step[1]) * 0.3 * KM_DEG
    lon, lat = shore[0] + step[0], shore[1] + step[1]
    assert not florida.contains(shapely.Point(lon, lat))
    found = us_layer.assignment_index(Settings()).assign(np.array([lon]), np.array([lat]))
    assert found.names[0] == "nearest"
    assert us_layer.frame["region_id"].iloc[found.region[0]] == "FL"
    assert found.distance_km[0] == pytest.approx(0.3, abs=0.05)


def test_overlapping_regions_give_the_lowest_region_id(tmp_path):
    """Where a user's polygons overlap, a point inside both gets the lowest region_id, everywhere."""
    from tests.conftest import SQUARE_FIGURES

    big, small = shapely.box(0, 0, 4, 4), shapely.box(1.3, 1.3, 2.2, 2.2)
    rows = [{"region_id": "B", "region_name": "big", **SQUARE_FIGURES["A"], "geometry": big},
            {"region_id": "A", "region_name": "small", **SQUARE_FIGURES["B"], "geometry": small}]  # fmt: skip
    path = tmp_path / "overlap.geojson"
    gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326").to_file(path)
    layer = load_regions(path)
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(0.05, 3.95, 20_000), rng.uniform(0.05, 3.95, 20_000)
    found = layer.assignment_index(Settings()).assign(lon, lat)
    in_small = shapely.contains_xy(small, lon, lat)
    names = layer.frame["region_id"].to_numpy()[found.region]
    assert (names[in_small] == "A").all() and (names[~in_small & (found.names == "inside")] == "B").all()
