"""Rebuild gridmap's embedded default region layer from its published inputs.

Inputs (nothing here is estimated; every figure is copied or converted):

* US Census Bureau cartographic boundary file ``cb_2016_us_state_500k`` as shipped by the
  PyPI package ``plotly-geo`` (CRS NAD83, EPSG:4269; the shapefile has no .prj).
* ``states_2023.csv`` compiled from EPA eGRID2023 and EIA tables (see ``../shared/data/SOURCES.md``).
* ``sample_sites.csv``: 12 real data-center campuses.

Run from the repository root::

    python data/build.py --shared ../shared/data

It rewrites ``data/figures_2023.csv``, ``data/regions.parquet``, ``data/regions_display.parquet``,
``data/layer.json`` and ``data/sample_sites.csv``. The build is deterministic: running it twice
gives the same figures and geometry.
"""

from __future__ import annotations

import argparse
import json
from importlib.resources import files
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
LAYER_NAME = "US states (Census 2016 1:500k) with EPA eGRID2023 and EIA 2023 figures"
DATA_YEAR = 2023
# Douglas-Peucker tolerance for the display copy, in degrees (~500 m): keeps state outlines
# recognisable at national zoom while cutting the vertex count by ~90 %.
DISPLAY_TOLERANCE_DEG = 0.005

# our column -> (source column in states_2023.csv, unit, source key)
FIGURES = {
    "renewable_share": ("derived_renewable_share", "fraction 0-1 of net generation", "egrid_t4"),
    "carbon_free_share": ("derived_carbon_free_share", "fraction 0-1 of net generation", "egrid_t4"),
    "co2_kg_per_mwh": ("derived_co2_rate_kg_mwh", "kg CO2 / MWh", "egrid_t3"),
    "co2_rate_lb_mwh": ("co2_rate_lb_mwh", "lb CO2 / MWh", "egrid_t3"),
    "co2e_rate_lb_mwh": ("co2e_rate_lb_mwh", "lb CO2e / MWh", "egrid_t3"),
    "price_cents_per_kwh": ("price_industrial_cents_kwh", "US cents / kWh", "eia861"),
    "price_residential_cents_kwh": ("price_residential_cents_kwh", "US cents / kWh", "eia861"),
    "price_commercial_cents_kwh": ("price_commercial_cents_kwh", "US cents / kWh", "eia861"),
    "price_all_sectors_cents_kwh": ("price_all_sectors_cents_kwh", "US cents / kWh", "eia861"),
    "retail_sales_mwh": ("retail_sales_total_mwh", "MWh / year", "eia861"),
    "retail_sales_industrial_mwh": ("retail_sales_industrial_mwh", "MWh / year", "eia861"),
    "summer_capacity_mw": ("summer_capacity_total_mw", "MW", "eia_cap"),
    "net_generation_mwh": ("egrid_net_generation_mwh", "MWh / year", "egrid_t4"),
    "nameplate_capacity_mw": ("egrid_nameplate_capacity_mw", "MW", "egrid_t4"),
}
MIX = ["coal", "oil", "gas", "other_fossil", "nuclear", "hydro", "biomass", "wind", "solar",
       "geothermal", "other_unknown_purchased"]  # fmt: skip
for _fuel in MIX:
    FIGURES[f"gen_share_{_fuel}"] = (f"gen_share_{_fuel}", "fraction 0-1 of net generation", "egrid_t4")

SOURCES = {
    "census": "US Census Bureau, Cartographic Boundary File cb_2016_us_state_500k (1:500,000), 2016; "
    "public domain; as shipped in the PyPI package plotly-geo 1.0.0",
    "egrid_t3": "US EPA, eGRID2023 Summary Tables (rev1, produced 01/17/2025), "
    "Table 3 'State Output Emission Rates', data year 2023",
    "egrid_t4": "US EPA, eGRID2023 Summary Tables (rev1, produced 01/17/2025), "
    "Table 4 'State Resource Mix', data year 2023",
    "eia_cap": "US EIA, 'Existing Nameplate and Net Summer Capacity by Energy Source, Producer Type "
    "and State' (existcapacity_annual), Year 2023, Total Electric Power Industry",
    "eia861": "US EIA, Form EIA-861 historical state data 'HS861 2010-.xlsx', "
    "sheet 'Total Electric Industry', Year 2023 (average revenue per kWh)",
}


def census_states() -> gpd.GeoDataFrame:
    """Read the Census states shapefile and put it in EPSG:4326."""
    shp = files("_plotly_geo") / "package_data" / "cb_2016_us_state_500k.shp"
    gdf = gpd.read_file(str(shp))
    gdf = gdf.set_crs("EPSG:4269", allow_override=True).to_crs("EPSG:4326")
    return gdf[["STUSPS", "NAME", "geometry"]].rename(columns={"STUSPS": "region_id"})


def compiled_figures(shared: Path) -> pd.DataFrame:
    """Select, rename and type the published per-state figures (50 states + DC)."""
    raw = pd.read_csv(shared / "states_2023.csv", dtype={"state_fips": str})
    raw = raw[raw["state"] != "US"]
    if set(raw["year"]) != {DATA_YEAR}:
        raise ValueError(f"states_2023.csv: expected year {DATA_YEAR}, found {sorted(set(raw['year']))}")
    out = pd.DataFrame({"region_id": raw["state"], "region_name": raw["state_name"],
                        "state_fips": raw["state_fips"], "data_year": raw["year"]})  # fmt: skip
    for ours, (theirs, _unit, _src) in FIGURES.items():
        out[ours] = raw[theirs].astype("float64")
    return out.sort_values("region_id").reset_index(drop=True)


def layer_metadata() -> dict:
    """The metadata that travels with the layer: name, year, sources and units per column."""
    columns = {c: {"unit": u, "source": SOURCES[s], "source_column": t} for c, (t, u, s) in FIGURES.items()}
    columns["region_id"] = {"unit": None, "source": "USPS state code", "source_column": "STUSPS"}
    columns["region_name"] = {"unit": None, "source": SOURCES["eia861"], "source_column": "state_name"}
    return {
        "name": LAYER_NAME,
        "data_year": DATA_YEAR,
        "region_kind": "US state",
        "geometry_source": SOURCES["census"],
        "sources": sorted(set(SOURCES.values())),
        "columns": columns,
    }


def build(shared: Path, out: Path) -> gpd.GeoDataFrame:
    """Join geometry and figures, check nothing is lost, write every data file."""
    figures = compiled_figures(shared)
    shapes = census_states()
    layer = shapes.merge(figures, on="region_id", how="inner", validate="one_to_one")
    missing = sorted(set(figures["region_id"]) - set(layer["region_id"]))
    if missing or len(layer) != 51:
        raise ValueError(f"join lost regions {missing}; got {len(layer)} of 51")
    layer = layer.drop(columns="NAME").sort_values("region_id").reset_index(drop=True)
    layer = gpd.GeoDataFrame(layer, geometry="geometry", crs="EPSG:4326")
    meta = layer_metadata()
    figures.to_csv(out / "figures_2023.csv", index=False, lineterminator="\n")
    _write_layer(layer, out / "regions.parquet", meta)
    display = layer.copy()
    display["geometry"] = display.geometry.simplify(DISPLAY_TOLERANCE_DEG, preserve_topology=True)
    _write_layer(display, out / "regions_display.parquet", meta | {"geometry": "simplified for display"})
    (out / "layer.json").write_text(json.dumps(meta, indent=2) + "\n")
    sample_sites(shared).to_csv(out / "sample_sites.csv", index=False, lineterminator="\n")
    return layer


def _write_layer(layer: gpd.GeoDataFrame, path: Path, meta: dict) -> None:
    """GeoParquet with the layer metadata under the ``gridmap`` key, so it travels with the file."""
    layer.to_parquet(path, index=False, schema_version="1.0.0")
    table = pq.read_table(path)
    extra = {**(table.schema.metadata or {}), b"gridmap": json.dumps(meta).encode()}
    pq.write_table(table.replace_schema_metadata(extra), path, compression="zstd")


def sample_sites(shared: Path) -> pd.DataFrame:
    """The 12 sample campuses, with ``announced_mw`` copied to ``it_load_mw`` as a planning load."""
    raw = pd.read_csv(shared / "sample_sites.csv")
    cols = ["site_id", "name", "lon", "lat", "it_load_mw", "announced_mw", "power_basis",
            "operator", "state", "status", "source"]  # fmt: skip
    return raw.assign(it_load_mw=raw["announced_mw"])[cols]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    layer = build(args.shared, args.out)
    print(f"wrote {len(layer)} regions to {args.out}")


if __name__ == "__main__":
    main()
