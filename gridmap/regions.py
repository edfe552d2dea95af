"""Load and validate a region layer: polygons, their grid figures, and the layer's metadata.

A region layer is any polygon file (GeoParquet, GeoPackage, GeoJSON, Shapefile) whose attribute
table has :data:`REQUIRED_COLUMNS`. Values may be empty (a figure the publisher does not give);
metrics that need an empty figure come back empty, never estimated.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely

from .config import Settings
from .errors import NotFoundError, RegionLayerError

# column -> (unit, meaning); the contract every region layer meets
REQUIRED_COLUMNS = {
    "region_id": (None, "unique region code (for the default layer: USPS state code)"),
    "region_name": (None, "region name"),
    "renewable_share": ("fraction 0-1", "hydro + wind + solar + geothermal + biomass share of net generation"),
    "carbon_free_share": ("fraction 0-1", "renewable share + nuclear share of net generation"),
    "co2_kg_per_mwh": ("kg CO2 / MWh", "average CO2 output emission rate of generation in the region"),
    "price_cents_per_kwh": ("US cents / kWh", "average industrial retail price"),
    "retail_sales_mwh": ("MWh / year", "annual retail electricity sales, all sectors"),
    "summer_capacity_mw": ("MW", "net summer generating capacity"),
    "net_generation_mwh": ("MWh / year", "annual net generation in the region"),
}
NUMERIC_COLUMNS = [c for c, (unit, _) in REQUIRED_COLUMNS.items() if unit]
META_KEY = b"gridmap"
SIDECAR_SUFFIX = ".meta.json"
_BUILD_LOCK = threading.Lock()


@dataclass(eq=False)
class RegionLayer:
    """A validated region layer in EPSG:4326, ordered by ``region_id``.

    ``frame`` holds full-resolution geometry for assignment, ``display`` a simplified copy for maps.
    """

    frame: gpd.GeoDataFrame
    display: gpd.GeoDataFrame
    meta: dict
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _indexes: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def data_year(self) -> int | None:
        return self.meta.get("data_year")

    def provenance(self) -> dict:
        """Layer name, data year and sources: attached to every output."""
        from .config import METHOD_VERSION

        return {"layer": self.name, "data_year": self.data_year, "method_version": METHOD_VERSION,
                "sources": self.meta.get("sources", [])}  # fmt: skip

    def region(self, region_id: str) -> pd.Series:
        """One region's row, or :class:`NotFoundError` naming the known ids."""
        hit = self.frame.index[self.frame["region_id"] == region_id]
        if len(hit) == 0:
            raise NotFoundError(f"unknown region_id {region_id!r}; the layer has {len(self.frame)} regions")
        return self.frame.loc[hit[0]]

    @cached_property
    def figures(self) -> pd.DataFrame:
        """The attribute table without geometry, one row per region in layer order."""
        return pd.DataFrame(self.frame.drop(columns="geometry"))

    def assignment_index(self, settings: Settings):
        """This thread's assignment index (GEOS prepared geometries are not thread-safe)."""
        from .assign import GridIndex

        key = (settings.nearest_km, settings.boundary_m)
        with _BUILD_LOCK:
            shared = self._indexes.get(key)
            if shared is None:
                shared = self._indexes[key] = GridIndex.build(
                    self.frame.geometry.values, nearest_km=key[0], boundary_m=key[1]
                )
        copies = self._local.__dict__.setdefault("copies", {})
        if key not in copies:
            copies[key] = shared.thread_copy()
        return copies[key]


def load_regions(path: str | Path, *, display_path: str | Path | None = None) -> RegionLayer:
    """Read, validate and normalise a region layer file.

    Raises
    ------
    RegionLayerError
        If the file is missing or unreadable, has no CRS, lacks required columns, has
        non-numeric figures, duplicate or empty ids, or non-polygon / empty geometry.
    """
    path = Path(path)
    frame = _normalise(_read(path), path)
    display = _normalise(_read(Path(display_path)), Path(display_path)) if display_path else None
    if display is None:
        display = frame.assign(geometry=frame.geometry.simplify(0.005, preserve_topology=True))
    elif list(display["region_id"]) != list(frame["region_id"]):
        raise RegionLayerError(f"{display_path}: display layer regions differ from {path}")
    return RegionLayer(frame=frame, display=display, meta=_metadata(path, frame))


def _read(path: Path) -> gpd.GeoDataFrame:
    if not path.exists():
        raise RegionLayerError(f"region layer {path} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            return gpd.read_parquet(path)
        return gpd.read_file(path)
    except Exception as exc:  # pyogrio/pyarrow raise many types; all mean "cannot read"
        raise RegionLayerError(f"cannot read region layer {path}: {exc}") from exc


def _normalise(gdf: gpd.GeoDataFrame, path: Path) -> gpd.GeoDataFrame:
    # Shapefile (dBASE) cuts column names to 10 characters; accept the cut names
    truncated = {c[:10]: c for c in REQUIRED_COLUMNS if c not in gdf.columns and c[:10] in gdf.columns}
    gdf = gdf.rename(columns=truncated)
    missing = [c for c in REQUIRED_COLUMNS if c not in gdf.columns]
    if missing:
        raise RegionLayerError(f"{path}: missing required columns {', '.join(missing)}")
    if gdf.crs is None:
        raise RegionLayerError(f"{path}: layer has no CRS; set one (e.g. EPSG:4326) before loading")
    gdf = gdf.to_crs("EPSG:4326") if not gdf.crs.equals("EPSG:4326") else gdf
    gdf = gdf.copy()
    gdf["region_id"] = _ids(gdf["region_id"], path)
    gdf["region_name"] = gdf["region_name"].astype("string").fillna("").astype(str)
    for col in NUMERIC_COLUMNS:
        gdf[col] = _numeric(gdf[col], col, path)
    _check_geometry(gdf, path)
    return gdf.sort_values("region_id", kind="stable").reset_index(drop=True)


def _ids(ids: pd.Series, path: Path) -> pd.Series:
    text = ids.astype("string").str.strip()
    if text.isna().any() or (text == "").any():
        raise RegionLayerError(
            f"{path}: region_id is empty in row {int(np.flatnonzero(text.isna() | (text == ''))[0]) + 1}"
        )
    dup = text[text.duplicated()]
    if len(dup):
        raise RegionLayerError(f"{path}: duplicate region_id {dup.iloc[0]!r}")
    return text.astype(str)


def _numeric(values: pd.Series, col: str, path: Path) -> pd.Series:
    out = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = out.isna() & values.notna() & (values.astype("string").str.strip() != "")
    if bad.any() or np.isinf(out).any():
        row = int(np.flatnonzero(bad | np.isinf(out))[0]) + 1
        raise RegionLayerError(f"{path}: column {col} row {row} is not a finite number: {values.iloc[row - 1]!r}")
    return out


def _check_geometry(gdf: gpd.GeoDataFrame, path: Path) -> None:
    geoms = gdf.geometry.values
    kinds = shapely.get_type_id(geoms)
    bad = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms) | ~np.isin(kinds, [3, 6]))
    if len(bad):
        raise RegionLayerError(f"{path}: region {gdf['region_id'].iloc[bad[0]]!r} has no polygon geometry")
    invalid = np.flatnonzero(~shapely.is_valid(geoms))
    if len(invalid):
        rid = gdf["region_id"].iloc[invalid[0]]
        reason = shapely.is_valid_reason(geoms[invalid[0]])
        raise RegionLayerError(f"{path}: region {rid!r} has invalid geometry ({reason}); repair it with make_valid")


def _metadata(path: Path, frame: gpd.GeoDataFrame) -> dict:
    meta = _embedded_meta(path) or _sidecar_meta(path) or {}
    years = frame["data_year"].dropna().unique() if "data_year" in frame else []
    meta.setdefault("name", path.stem)
    meta.setdefault("data_year", int(years[0]) if len(years) == 1 else None)
    meta.setdefault("sources", [])
    meta.setdefault("columns", {c: {"unit": u, "source": None} for c, (u, _) in REQUIRED_COLUMNS.items()})
    meta["path"] = path.name
    meta["region_count"] = len(frame)
    return meta


def _embedded_meta(path: Path) -> dict | None:
    if path.suffix.lower() not in (".parquet", ".geoparquet"):
        return None
    kv = pq.read_schema(path).metadata or {}
    return json.loads(kv[META_KEY]) if META_KEY in kv else None


def _sidecar_meta(path: Path) -> dict | None:
    candidate = path.with_name(path.name + SIDECAR_SUFFIX)
    if not candidate.exists():
        return None
    try:
        return json.loads(candidate.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RegionLayerError(f"{candidate}: layer metadata is not valid JSON: {exc}") from exc


def default_layer(settings: Settings | None = None) -> RegionLayer:
    """The layer named by ``settings`` (the embedded US states layer by default).

    Loaded once per process per file version: app factories, CLI commands and tests that ask for
    the same unchanged file share one layer and its assignment index.
    """
    settings = settings or Settings()
    paths = [Path(settings.regions_path)] + (
        [Path(settings.display_regions_path)] if settings.display_regions_path else []
    )
    stamp = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in paths if p.exists())
    if len(stamp) < len(paths):
        return load_regions(settings.regions_path, display_path=settings.display_regions_path)
    return _cached_layer(stamp)


@functools.lru_cache(maxsize=4)
def _cached_layer(stamp: tuple) -> RegionLayer:
    display = stamp[1][0] if len(stamp) > 1 else None
    return load_regions(stamp[0][0], display_path=display)
