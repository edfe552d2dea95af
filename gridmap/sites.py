"""Parse and validate candidate sites from CSV, GeoJSON, GeoParquet, records or a DataFrame.

Validation is vectorised and row-level: a bad row is reported with its 1-based row number (the
first data row or feature is row 1), the field and the reason, and is left out of scoring; good
rows go on. Nothing is dropped without an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Settings
from .errors import InputError, RowError
from .fields import RESERVED_INPUT_COLUMNS, SITE_FIELDS

ALIASES = {"longitude": "lon", "latitude": "lat", "lng": "lon", "long": "lon", "x": "lon", "y": "lat"}
WGS84_NAMES = {"EPSG:4326", "OGC:CRS84", "URN:OGC:DEF:CRS:OGC:1.3:CRS84", "URN:OGC:DEF:CRS:EPSG::4326"}
LONG_ROW = "not a readable CSV file: data row 1 has more fields than the header row (a trailing comma?)"
# field -> (low, high, low inclusive, what it must be)
RANGES = {
    "lon": (-180.0, 180.0, True, "a longitude in [-180, 180]"),
    "lat": (-90.0, 90.0, True, "a latitude in [-90, 90]"),
    # 1,000,000 MW is about the whole US generating capacity: a larger IT load is a typo
    "it_load_mw": (0.0, 1e6, False, "a number > 0 and <= 1,000,000 (MW of IT load)"),
    "pue": (1.0, 5.0, True, "a PUE in [1, 5]"),
    "load_factor": (0.0, 1.0, False, "a load factor in (0, 1]"),
}


@dataclass
class SiteBatch:
    """Valid sites (``row`` = input row number, contract fields, extra columns) and row errors."""

    sites: pd.DataFrame
    errors: list[RowError] = field(default_factory=list)
    total_rows: int = 0

    @property
    def extra_columns(self) -> list[str]:
        return [c for c in self.sites.columns if c not in SITE_FIELDS and c != "row"]


def read_sites(path: str | Path, *, settings: Settings | None = None) -> SiteBatch:
    """Read a sites file; its extension (.csv, .geojson/.json, .parquet) says the format."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError(f"sites file {path} does not exist")
    if suffix in (".csv", ".txt"):
        return parse_sites(_read_csv(path), settings=settings)
    if suffix in (".geojson", ".json"):
        return parse_geojson(_load_json(path.read_bytes(), str(path)), settings=settings)
    if suffix in (".parquet", ".geoparquet"):
        return parse_sites(_read_parquet(path), settings=settings)
    raise InputError(f"{path}: unknown sites format {suffix!r}; use .csv, .geojson, .json or .parquet")


def parse_csv_text(text: str | bytes, *, settings: Settings | None = None) -> SiteBatch:
    """Parse CSV text (a header row, then one site per row)."""
    buf = io.BytesIO(text.encode("utf-8") if isinstance(text, str) else text)
    return parse_sites(_read_csv(buf), settings=settings)


def parse_records(records: Iterable[Mapping[str, Any]], *, settings: Settings | None = None) -> SiteBatch:
    """Parse a list of site objects (``{"lon": .., "lat": .., "it_load_mw": ..}``)."""
    records = list(records)
    bad = [i + 1 for i, r in enumerate(records) if not isinstance(r, Mapping)]
    if bad:
        raise InputError("each site must be a JSON object", [RowError(r, "", "not an object") for r in bad[:100]])
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    return parse_sites(_bools_as_text(frame), settings=settings)


def parse_geojson(doc: Any, *, settings: Settings | None = None) -> SiteBatch:
    """Parse a GeoJSON FeatureCollection (or one Feature) of Point features in WGS84."""
    features = _features(doc)
    _check_declared_crs(doc)
    rows, errors = [], []
    for i, feat in enumerate(features, start=1):
        props, err = _feature_row(feat, i)
        rows.append(props)
        errors.extend(err)
    if errors and len(errors) == len(features):
        raise InputError("no feature is a usable Point site", errors[:1000])
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    for col in ("lon", "lat"):
        if col not in frame and errors:
            frame[col] = np.nan
    batch = parse_sites(_bools_as_text(frame), settings=settings)
    if errors:
        bad_rows = {e.row for e in errors}
        batch.sites = batch.sites[~batch.sites["row"].isin(bad_rows)].reset_index(drop=True)
        batch.errors = sorted(errors + [e for e in batch.errors if e.row not in bad_rows], key=_order)
    return batch


def parse_sites(frame: pd.DataFrame, *, settings: Settings | None = None, first_row: int = 1) -> SiteBatch:
    """Validate a table of sites; the row numbers start at ``first_row``.

    Raises
    ------
    InputError
        When the table as a whole is unusable: no rows, or no lon/lat or it_load_mw column.
    """
    settings = settings or Settings()
    frame = _rename_aliases(frame)
    _check_columns(frame)
    frame = _keep_clashing_columns(frame)
    n = len(frame)
    rows = np.arange(first_row, first_row + n)
    out = pd.DataFrame({"row": rows})
    errors: list[RowError] = []
    defaults = {"pue": settings.default_pue, "load_factor": settings.default_load_factor}
    for name in ("lon", "lat", "it_load_mw", "pue", "load_factor"):
        out[name], errs = _number_column(frame, name, rows, defaults.get(name))
        errors += errs
    swaps = _swap_hints(out, rows)
    swapped_rows = {e.row for e in swaps}
    errors = [e for e in errors if not (e.field == "lat" and e.row in swapped_rows)] + swaps
    out["site_id"], errs = _site_ids(frame, rows)
    errors += errs
    out["name"] = _text(frame["name"]) if "name" in frame else out["site_id"]
    extra = [c for c in frame.columns if c not in SITE_FIELDS]
    for col in extra:
        out[col] = frame[col].to_numpy()
    bad = np.isin(rows, [e.row for e in errors])
    sites = out.loc[~bad, ["row", *SITE_FIELDS, *extra]].reset_index(drop=True)
    return SiteBatch(sites=sites, errors=sorted(errors, key=_order), total_rows=n)


def _order(e: RowError) -> tuple:
    return (e.row, SITE_FIELDS.index(e.field) if e.field in SITE_FIELDS else 99, e.field)


def _rename_aliases(frame: pd.DataFrame) -> pd.DataFrame:
    lower = {c: str(c).strip().lower() for c in frame.columns}
    renamed = {c: ALIASES.get(low, low) for c, low in lower.items()}
    targets = list(renamed.values())
    dups = sorted({t for t in targets if targets.count(t) > 1})
    if dups:
        raise InputError(
            f"column {dups[0]!r} is given twice (directly and through an alias such as longitude/latitude)"
        )
    return frame.rename(columns=renamed)


def _keep_clashing_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename input columns that results would overwrite (``score`` -> ``input_score``).

    Re-scoring a scored file is common; its old results are kept under the new names, not lost.
    """
    clash = {c: f"input_{c}" for c in frame.columns if c in RESERVED_INPUT_COLUMNS}
    taken = sorted(set(clash.values()) & set(frame.columns))
    if taken:
        raise InputError(f"input columns {', '.join(taken)} and {taken[0][6:]} both exist; rename one of them")
    return frame.rename(columns=clash)


def _check_columns(frame: pd.DataFrame) -> None:
    missing = [c for c in ("lon", "lat", "it_load_mw") if c not in frame.columns]
    if missing:
        # a binary file's "header" can hold terminal control characters; never echo them
        have = "".join(ch if ch.isprintable() else "?" for ch in ", ".join(map(str, frame.columns[:20]))) or "none"
        raise InputError(f"missing required column(s) {', '.join(missing)}; columns found: {have}")
    if len(frame) == 0:
        raise InputError("no sites: the input has no data rows")


def _number_column(frame, name, rows, default):
    if name not in frame:
        return np.full(len(rows), default, dtype="float64"), []
    raw = frame[name]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        # fast path for typed inputs (Parquet, records): no text to inspect
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        blank = np.isnan(values)
    else:
        values = _to_float(raw)
        blank = raw.isna().to_numpy() | (raw.astype("string").str.strip() == "").to_numpy(dtype=bool, na_value=True)
    if default is not None:
        values = np.where(blank, default, values)
    low, high, low_incl, want = RANGES[name]
    in_range = (values >= low if low_incl else values > low) & (values <= high)
    bad = ~(np.isfinite(values) & in_range)
    errors = [
        RowError(int(r), name, _why(name, v, b, want)) for r, v, b in zip(rows[bad], raw[bad], blank[bad], strict=True)
    ]
    return values, errors


def _to_float(raw: pd.Series) -> np.ndarray:
    try:
        return pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    except OverflowError:  # a JSON integer beyond float range (1e400 written out) is not coerced, it raises
        return raw.map(_float_or_nan).to_numpy(dtype="float64")


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return np.nan


def _why(name: str, value: Any, blank: bool, want: str) -> str:
    if blank:
        return f"{name} is missing; it must be {want}"
    return f"{name}={_show(value)} is not {want}"


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _swap_hints(out: pd.DataFrame, rows: np.ndarray) -> list[RowError]:
    """Latitude out of range but fine as a longitude, and vice versa: the classic lon/lat swap."""
    lon, lat = out["lon"].to_numpy(), out["lat"].to_numpy()
    swapped = (np.abs(lat) > 90) & (np.abs(lat) <= 180) & (np.abs(lon) <= 90)
    return [RowError(int(r), "lat", f"lon={a:g}, lat={b:g}: lon and lat look swapped (lat must be in [-90, 90])")
            for r, a, b in zip(rows[swapped], lon[swapped], lat[swapped], strict=True)]  # fmt: skip


def _site_ids(frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, list[RowError]]:
    if "site_id" not in frame:
        return _generated_ids(rows), []
    ids = _text(frame["site_id"])
    blank = ids == ""
    if blank.any():
        ids[blank] = _generated_ids(rows[blank])
    dup = pd.Series(ids).duplicated(keep="first").to_numpy()
    if not dup.any():
        return ids, []
    first = pd.Series(rows[~dup], index=ids[~dup]).loc[ids[dup]].to_numpy()
    errors = [RowError(int(r), "site_id", f"duplicate site_id {_show(i)} (first used in row {f})")
              for r, i, f in zip(rows[dup], ids[dup], first, strict=True)]  # fmt: skip
    return ids, errors


def _generated_ids(rows: np.ndarray) -> np.ndarray:
    return ("row-" + pd.Series(rows).astype(str)).to_numpy(dtype=object)


def _bools_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    # JSON true/false would pass as the numbers 1/0 (e.g. it_load_mw: true = 1 MW); as text they are errors
    for name in ("lon", "lat", "it_load_mw", "pue", "load_factor"):
        if name in frame and frame[name].dtype in (object, bool):
            is_bool = frame[name].map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
            if is_bool.any():
                frame[name] = frame[name].astype(object).where(~is_bool, frame[name].astype(str))
    return frame


def _text(col: pd.Series) -> np.ndarray:
    return col.astype("string").fillna("").str.strip().to_numpy(dtype=object)


CSV_OPTIONS = {"dtype": str, "keep_default_na": False, "skipinitialspace": True, "index_col": False}


@contextlib.contextmanager
def csv_errors() -> Iterator[None]:
    """Turn pandas' CSV failures into :class:`InputError` (shared by the whole-file and chunked readers).

    Without ``index_col=False`` a first row longer than the header silently becomes the index and
    shifts every row's values one column over; with it pandas only warns, so the readers turn that
    ``ParserWarning`` into an error, reported here.
    """
    try:
        yield
    except pd.errors.EmptyDataError:
        raise InputError("no sites: the CSV is empty") from None
    except pd.errors.ParserWarning:
        raise InputError(LONG_ROW, [RowError(1, "", "the row has more fields than the header")]) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"not a readable CSV file: {exc}") from None


def _read_csv(source) -> pd.DataFrame:
    with csv_errors(), warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        frame = pd.read_csv(source, **CSV_OPTIONS)
    return frame.replace("", np.nan)


def _read_parquet(path: Path) -> pd.DataFrame:
    import geopandas as gpd
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        if b"geo" not in meta:
            return pd.read_parquet(path)
        gdf = gpd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None
    return _points_to_columns(gdf, str(path))


def _points_to_columns(gdf, where: str) -> pd.DataFrame:
    if gdf.crs is not None and gdf.crs.to_epsg() != 4326 and not gdf.crs.equals("OGC:CRS84"):
        gdf = gdf.to_crs("EPSG:4326")
    geom = gdf.geometry
    not_point = ~(geom.geom_type == "Point") & geom.notna()
    if not_point.any():
        i = int(np.flatnonzero(not_point.to_numpy())[0])
        raise InputError(
            f"{where}: geometry must be Point",
            [RowError(i + 1, "geometry", f"{geom.iloc[i].geom_type} is not a Point")],
        )
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    frame["lon"], frame["lat"] = geom.x.to_numpy(), geom.y.to_numpy()
    return frame


def _load_json(data: bytes | str, where: str = "body") -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise InputError(f"{where}: not valid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from None


def _features(doc: Any) -> list:
    if isinstance(doc, Mapping) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list):
            raise InputError("GeoJSON FeatureCollection has no 'features' list")
        if not feats:
            raise InputError("no sites: the GeoJSON FeatureCollection has no features")
        return feats
    if isinstance(doc, Mapping) and doc.get("type") == "Feature":
        return [doc]
    raise InputError("expected a GeoJSON FeatureCollection or Feature of Point sites")


def _check_declared_crs(doc: Mapping) -> None:
    crs = doc.get("crs") if isinstance(doc, Mapping) else None
    if crs is None:
        return
    name = str((crs.get("properties") or {}).get("name", "")) if isinstance(crs, Mapping) else str(crs)
    if name.upper() not in WGS84_NAMES:
        message = (
            f"GeoJSON declares crs {name!r}; gridmap reads WGS84 longitude/latitude (EPSG:4326) only, reproject first"
        )
        raise InputError(message, [RowError(0, "crs", message)])


def _feature_row(feat: Any, row: int) -> tuple[dict, list[RowError]]:
    if not isinstance(feat, Mapping) or feat.get("type") != "Feature":
        return {}, [RowError(row, "geometry", "not a GeoJSON Feature")]
    props = dict(feat.get("properties") or {}) if isinstance(feat.get("properties") or {}, Mapping) else {}
    geom = feat.get("geometry")
    if geom is None:
        return props, (
            []
            if "lon" in props or "longitude" in props
            else [RowError(row, "geometry", "has no geometry and no lon/lat")]
        )
    if not isinstance(geom, Mapping) or geom.get("type") != "Point":
        kind = geom.get("type") if isinstance(geom, Mapping) else type(geom).__name__
        return props, [RowError(row, "geometry", f"geometry is {kind}, expected Point")]
    coords = geom.get("coordinates")
    if not isinstance(coords, list | tuple) or len(coords) < 2:
        return props, [RowError(row, "geometry", "Point coordinates must be [lon, lat]")]
    props.pop("longitude", None), props.pop("latitude", None)
    props["lon"], props["lat"] = coords[0], coords[1]
    if "id" in feat and "site_id" not in props:
        props["site_id"] = feat["id"]
    return props, []
