"""Shared fixtures: the real default layer (loaded once) and tiny synthetic unit-square layers."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from gridmap.config import Settings
from gridmap.regions import RegionLayer, default_layer, load_regions

ROOT = Path(__file__).resolve().parent.parent

# Figures for the synthetic squares: A is clean and cheap, B dirty and dear, C has no price.
SQUARE_FIGURES = {
    "A": dict(renewable_share=0.8, carbon_free_share=0.9, co2_kg_per_mwh=100.0, price_cents_per_kwh=5.0,
              retail_sales_mwh=1_000_000.0, summer_capacity_mw=400.0, net_generation_mwh=2_000_000.0),
    "B": dict(renewable_share=0.1, carbon_free_share=0.2, co2_kg_per_mwh=900.0, price_cents_per_kwh=15.0,
              retail_sales_mwh=2_000_000.0, summer_capacity_mw=300.0, net_generation_mwh=1_000_000.0),
    "C": dict(renewable_share=0.5, carbon_free_share=0.5, co2_kg_per_mwh=500.0, price_cents_per_kwh=None,
              retail_sales_mwh=500_000.0, summer_capacity_mw=100.0, net_generation_mwh=500_000.0),
}  # fmt: skip


def square_frame(figures: dict = SQUARE_FIGURES) -> gpd.GeoDataFrame:
    """A = [0,1]x[0,1], B = [1,2]x[0,1], C = [0,1]x[2,3] (a gap between A and C), EPSG:4326."""
    boxes = {"A": shapely.box(0, 0, 1, 1), "B": shapely.box(1, 0, 2, 1), "C": shapely.box(0, 2, 1, 3)}
    rows = [{"region_id": k, "region_name": f"Region {k}", **v, "geometry": boxes[k]} for k, v in figures.items()]
    return gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")


@pytest.fixture(scope="session")
def squares_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("layers") / "squares.geojson"
    square_frame().to_file(path, driver="GeoJSON")
    return path


@pytest.fixture(scope="session")
def squares(squares_path) -> RegionLayer:
    return load_regions(squares_path)


@pytest.fixture(scope="session")
def us_layer() -> RegionLayer:
    return default_layer(Settings())


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="module")
def app():
    """The web app on the default settings (one per test module; the region layer is shared)."""
    from gridmap.app import create_app

    return create_app(Settings())


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()
