"""The JSON REST API under ``/api/v1``: parse the request, call the scoring core, serialise.

Weights, in the query of ``GET`` and ``POST /score``: ``weights=renewable=0.4,carbon=0.3,...``
(names left out count 0) and/or ``w_<name>=<number>`` (overrides one weight, starting from
``weights=`` or from the default weights). ``POST /score`` also takes them in a JSON body
``{"sites": [...], "weights": {...}}``; giving them in both places is an error.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import shapely
from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import UnsupportedMediaType

from .config import WEIGHT_NAMES, Settings, parse_weights
from .errors import InputError, TooLargeError, WeightsError
from .outputs import csv_text
from .problem import ParameterError
from .scoring import HOURS_PER_YEAR, composite_score, load_stress, provenance, score_components, score_sites
from .sites import RANGES, SITE_FIELDS, SiteBatch, parse_csv_text, parse_geojson, parse_records

bp = Blueprint("api", __name__, url_prefix="/api/v1")

GEOMETRY_MODES = ("simplified", "full", "none")
FORMATS = ("geojson", "json", "csv")
JSON_TYPES = ("application/json", "application/geo+json")
CSV_TYPES = ("text/csv",)
GEOJSON = "application/geo+json"
# a plain decimal number; anything else goes through the core's validation and its messages
_PLAIN_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def state():
    """The :class:`~gridmap.app.GridmapState` of the running app."""
    return current_app.extensions["gridmap"]


# ---- responses ---------------------------------------------------------------------------------


def json_response(body, status: int = 200, *, mimetype: str = "application/json") -> Response:
    """A JSON response; ``body`` is an object or already serialised text."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, allow_nan=False)
    return Response(text, status=status, mimetype=mimetype)


def collection_text(features: list[str], members: dict) -> str:
    """A FeatureCollection from serialised features, with extra top-level members first."""
    head = json.dumps({"type": "FeatureCollection", **members}, ensure_ascii=False, allow_nan=False)
    return head[:-1] + ', "features": [\n' + ",\n".join(features) + "\n]}\n"


def with_members(feature: str, members: dict) -> str:
    """Add top-level members to a serialised Feature."""
    head = json.dumps(members, ensure_ascii=False, allow_nan=False)
    return head[:-1] + ", " + feature[1:]


def feature_texts(props: pd.DataFrame, geometries: list[str], ids: list) -> list[str]:
    """Serialised GeoJSON Features; pandas writes the properties (NaN -> null) in C."""
    lines = props.to_json(orient="records", lines=True, date_format="iso", double_precision=15).splitlines()
    ids_json = [json.dumps(str(i), ensure_ascii=False) for i in ids]
    rows = zip(ids_json, geometries, lines, strict=True)
    return [f'{{"type":"Feature","id":{i},"geometry":{g},"properties":{p}}}' for i, g, p in rows]


def point_geometries(frame: pd.DataFrame) -> list[str]:
    points = zip(frame["lon"].tolist(), frame["lat"].tolist(), strict=True)
    return [f'{{"type":"Point","coordinates":[{x!r},{y!r}]}}' for x, y in points]


def site_features(frame: pd.DataFrame) -> list[str]:
    """Scored sites as serialised point Features with ``id`` = ``site_id``."""
    return feature_texts(frame, point_geometries(frame), frame["site_id"].tolist())


def region_features(mode: str) -> list[str]:
    """The layer's regions as serialised Features, per geometry mode (built once per process)."""
    st = state()
    key = ("region_features", mode)
    if key not in st.cache:
        layer = st.layer
        geoms = (layer.frame if mode == "full" else layer.display).geometry.values
        texts = ["null"] * len(geoms) if mode == "none" else shapely.to_geojson(geoms).tolist()
        st.cache[key] = feature_texts(layer.figures, texts, layer.figures["region_id"].tolist())
    return st.cache[key]


def wants_csv() -> bool:
    """``format=csv``, or an Accept header that prefers text/csv over JSON."""
    fmt = choice_param("format", FORMATS, default=None)
    if fmt is not None:
        return fmt == "csv"
    best = request.accept_mimetypes.best_match([GEOJSON, "application/json", "text/csv"])
    return best == "text/csv"


def csv_response(result) -> Response:
    headers = {"X-Gridmap-Row-Errors": str(len(result.errors))}
    return Response(csv_text(result.frame, result.provenance), mimetype="text/csv", headers=headers)


# ---- parameters --------------------------------------------------------------------------------


def choice_param(name: str, allowed: tuple[str, ...], *, default: str | None) -> str | None:
    value = request.args.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise ParameterError(f"{name}={value!r} is not allowed; use one of {', '.join(allowed)}")
    return value


def int_param(name: str, *, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParameterError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ParameterError(f"{name}={value} is outside [{low}, {high}]")
    return value


def bbox_param() -> tuple[float, float, float, float] | None:
    """``bbox=minlon,minlat,maxlon,maxlat`` (WGS84); minlon > maxlon crosses the antimeridian."""
    raw = request.args.get("bbox")
    if raw is None:
        return None
    parts = raw.split(",")
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ParameterError(f"bbox={raw!r} must be four numbers minlon,minlat,maxlon,maxlat")
    minx, miny, maxx, maxy = box
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise ParameterError(f"bbox={raw!r}: lon must be in [-180, 180], lat in [-90, 90] and minlat <= maxlat")
    return box


def bbox_boxes(box: tuple[float, float, float, float]) -> list:
    minx, miny, maxx, maxy = box
    if minx <= maxx:
        return [shapely.box(minx, miny, maxx, maxy)]
    return [shapely.box(minx, miny, 180, maxy), shapely.box(-180, miny, maxx, maxy)]


def regions_in(box) -> np.ndarray:
    """Positions of the regions whose full geometry intersects the bbox (all if no bbox)."""
    geoms = state().layer.frame.geometry.values
    if box is None:
        return np.arange(len(geoms))
    hit = np.zeros(len(geoms), dtype=bool)
    for b in bbox_boxes(box):
        hit |= shapely.intersects(geoms, b)
    return np.flatnonzero(hit)


def points_in(frame: pd.DataFrame, box) -> np.ndarray:
    """Positions of the points inside the bbox (all if no bbox)."""
    if box is None:
        return np.arange(len(frame))
    lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
    minx, miny, maxx, maxy = box
    in_lon = (lon >= minx) & (lon <= maxx) if minx <= maxx else (lon >= minx) | (lon <= maxx)
    return np.flatnonzero(in_lon & (lat >= miny) & (lat <= maxy))


def query_weights(settings: Settings) -> dict[str, float] | None:
    """Weights from ``weights=`` and ``w_<name>=`` query parameters; None if none given."""
    text = request.args.get("weights")
    singles = {k[2:]: v for k, v in request.args.items() if k.startswith("w_")}
    if text is None and not singles:
        return None
    base = parse_weights(text) if text else dict(settings.weights)
    unknown = [k for k in singles if k not in WEIGHT_NAMES]
    if unknown:
        raise WeightsError(
            f"unknown weight parameter w_{unknown[0]}; allowed: {', '.join('w_' + n for n in WEIGHT_NAMES)}"
        )
    return parse_weights(base | singles)


# ---- routes ------------------------------------------------------------------------------------


@bp.get("/regions")
def regions():
    """The region layer with its figures as a GeoJSON FeatureCollection."""
    mode = choice_param("geometry", GEOMETRY_MODES, default="simplified")
    positions = regions_in(bbox_param())
    features = region_features(mode)
    members = {"gridmap": state().layer.provenance(), "numberMatched": len(positions)}
    return json_response(collection_text([features[i] for i in positions], members), mimetype=GEOJSON)


@bp.get("/regions/<region_id>")
def region(region_id: str):
    """One region as a GeoJSON Feature."""
    mode = choice_param("geometry", GEOMETRY_MODES, default="simplified")
    layer = state().layer
    layer.region(region_id)  # NotFoundError -> 404
    position = int(np.flatnonzero(layer.frame["region_id"].to_numpy() == region_id)[0])
    text = with_members(region_features(mode)[position], {"gridmap": layer.provenance()})
    return json_response(text, mimetype=GEOJSON)


@bp.get("/score")
def score_one():
    """Score one site given in the query string; a GeoJSON Feature (or one CSV row)."""
    st = state()
    weights = query_weights(st.settings)
    site = {k: request.args[k] for k in SITE_FIELDS if k in request.args}
    csv = wants_csv()
    fast = None if csv else single_site(site, st, weights)
    if fast is not None:
        return json_response(fast, mimetype=GEOJSON)
    batch = parse_records([site], settings=st.settings)
    if batch.sites.empty:
        raise InputError("the site is not valid; see errors", batch.errors)
    result = score_sites(batch, st.layer, weights=weights, settings=st.settings)
    if result.frame.empty:  # the core turned the site into an error (lon/lat swapped)
        raise InputError("the site is not valid; see errors", result.errors)
    if csv:
        return csv_response(result)
    return json_response(with_members(site_features(result.frame)[0], {"gridmap": result.provenance}), mimetype=GEOJSON)


@bp.post("/score")
def score_many():
    """Score the sites in the body (GeoJSON, JSON list or object, CSV)."""
    st = state()
    check_length(st.settings)
    batch, body_weights = read_body(st.settings)
    weights = query_weights(st.settings)
    if body_weights is not None and weights is not None:
        raise WeightsError("weights are given both in the query and in the body; give them in one place")
    weights = parse_weights(body_weights) if body_weights is not None else weights
    if batch.total_rows > st.settings.max_sites:
        raise TooLargeError(f"{batch.total_rows} sites is more than the limit of {st.settings.max_sites} per request")
    if batch.sites.empty:
        raise InputError(f"none of the {batch.total_rows} sites is valid; see errors", batch.errors)
    result = score_sites(batch, st.layer, weights=weights, settings=st.settings)
    if result.frame.empty:  # every valid row turned out to have lon/lat swapped
        raise InputError(f"none of the {batch.total_rows} sites is valid; see errors", result.errors)
    if wants_csv():
        return csv_response(result)
    members = {"gridmap": result.provenance, "summary": result.summary(), "regions": region_totals(result.frame),
               "errors": [e.as_dict() for e in result.errors]}  # fmt: skip
    return json_response(collection_text(site_features(result.frame), members), mimetype=GEOJSON)


@bp.get("/meta")
def meta():
    """Layer, data year, sources, method version, default weights, assumptions and limits."""
    st = state()
    layer, settings = st.layer, st.settings
    prov = layer.provenance()
    body = {
        **{k: prov[k] for k in ("layer", "data_year", "method_version", "sources")},
        "region_count": len(layer.frame),
        "columns": layer.meta.get("columns", {}),
        "weight_names": list(WEIGHT_NAMES),
        "default_weights": dict(settings.weights),
        "assumptions": settings.assumptions(),
        "limits": {"max_body_bytes": settings.max_body_bytes, "max_sites": settings.max_sites},
    }
    return json_response(body)


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3 document of this API and the OGC endpoints."""
    from .openapi import document

    return json_response(document(state()), mimetype="application/vnd.oai.openapi+json;version=3.0")


@bp.get("/docs")
def docs_page():
    """The OpenAPI document rendered as a plain HTML page (no scripts, no CDN)."""
    from .openapi import document, render_html

    return Response(render_html(document(state())), mimetype="text/html")


# ---- POST bodies -------------------------------------------------------------------------------


def check_count(count: int, settings: Settings) -> None:
    if count > settings.max_sites:
        raise TooLargeError(f"{count} sites is more than the limit of {settings.max_sites} per request")


def check_length(settings: Settings) -> None:
    """Refuse a too large body from its Content-Length, before reading it."""
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise TooLargeError(f"request body of {length} bytes is more than the limit of {settings.max_body_bytes} bytes")


def read_body(settings: Settings) -> tuple[SiteBatch, object]:
    """The sites of the body and the weights it gives (None if it gives none)."""
    kind = request.mimetype
    if kind not in JSON_TYPES + CSV_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {kind or 'missing'!r} is not accepted; "
            "send application/json, application/geo+json or text/csv"
        )
    data = request.get_data(cache=False)
    if request.content_length is None and len(data) >= settings.max_body_bytes:
        # a chunked body has no length to check first; werkzeug stops reading at the limit and
        # returns what it read, which must not be scored as if it were the whole body
        raise TooLargeError(f"request body is more than the limit of {settings.max_body_bytes} bytes")
    if not data.strip():
        raise ParameterError("the request body is empty; send sites as GeoJSON, a JSON list or CSV")
    if kind in CSV_TYPES:
        check_count(data.count(b"\n") - 1, settings)  # before parsing; a row may have no final newline
        return parse_csv_text(data, settings=settings), None
    try:
        doc = json.loads(data, parse_int=_json_int)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParameterError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ParameterError("the request body is not valid JSON: nested too deeply") from None
    sites, weights = unwrap(doc)
    return parse_site_doc(sites, settings), weights


def _json_int(text: str) -> int | float:
    # an integer beyond float range would crash pandas' number parsing; as inf it is reported
    # by the site validation as "not a number in range"
    value = int(text)
    return value if value.bit_length() < 1000 else float("inf")


def unwrap(doc) -> tuple[object, object]:
    """Split ``{"sites": ..., "weights": ...}``; a bare list or FeatureCollection is all sites."""
    if isinstance(doc, dict) and "sites" in doc:
        extra = sorted(set(doc) - {"sites", "weights"})
        if extra:
            raise InputError(f"unknown member {extra[0]!r} in the body; allowed: sites, weights")
        weights = doc.get("weights")
        if weights is not None and not isinstance(weights, dict | str):
            raise WeightsError("body member 'weights' must be an object {name: number} or 'name=value,...'")
        return doc["sites"], weights
    return doc, None


def parse_site_doc(doc, settings: Settings) -> SiteBatch:
    # "features" may be anything in a hostile body; only a list is counted here (parse_geojson words the rest)
    features = doc.get("features") if isinstance(doc, dict) else None
    count = len(doc) if isinstance(doc, list) else len(features) if isinstance(features, list) else 0
    if count > settings.max_sites:
        raise TooLargeError(f"{count} sites is more than the limit of {settings.max_sites} per request")
    if count == 0 and (isinstance(doc, list) or isinstance(features, list)):
        raise InputError("no sites: the body holds an empty list of sites")
    if isinstance(doc, list):
        return parse_records(doc, settings=settings)
    if isinstance(doc, dict) and doc.get("type") in ("FeatureCollection", "Feature"):
        return parse_geojson(doc, settings=settings)
    raise InputError('the body must be a GeoJSON FeatureCollection, a JSON list of sites or {"sites": [...]}')


def region_totals(frame: pd.DataFrame) -> list[dict]:
    """Per region: the request's sites, their energy together, and the cumulative figures."""
    assigned = frame[frame["region_id"].notna()]
    if assigned.empty:
        return []
    ids = assigned["region_id"].to_numpy(dtype=object)
    order = np.argsort(ids, kind="stable")
    regions, first, counts = np.unique(ids[order], return_index=True, return_counts=True)
    energy = np.add.reduceat(assigned["annual_energy_mwh"].to_numpy(dtype="float64")[order], first)
    # every site of a region carries the same cumulative figures: take the first one's
    head = assigned.iloc[order[first]]
    return [
        {"region_id": rid, "region_name": name, "sites": int(n), "annual_energy_mwh": _num(e),
         "cumulative_demand_growth_share": _num(share), "load_stress": _num(stress)}
        for rid, name, n, e, share, stress in zip(
            regions, head["region_name"], counts, energy, head["cumulative_demand_growth_share"], head["load_stress"],
            strict=True,
        )
    ]  # fmt: skip


# ---- one site, fast ----------------------------------------------------------------------------
# GET /score is the latency-critical path: the DataFrame machinery of score_sites costs ~20 ms for
# one row. A plainly valid site is scored here with the core's own formulas (load_stress,
# score_components, composite_score) on one-row inputs; tests check it equals score_sites. Any
# doubtful input falls back to the core, which validates and words the errors.


def single_site(site: dict, st, weights: dict | None) -> str | None:
    """One scored site as a serialised Feature, or None to use the core path."""
    values = plain_numbers(site, st.settings)
    if values is None:
        return None
    weights = parse_weights(weights) if weights is not None else dict(st.settings.weights)
    site_id = str(site.get("site_id", "")).strip() or "row-1"
    name = str(site.get("name", "")).strip() if "name" in site else site_id
    props = {"site_id": site_id, "name": name, **values} | single_metrics(values, st, weights)
    if props["region_id"] is None:
        return None  # outside every region: the core checks whether lon and lat are swapped
    props = {k: _num(v) if isinstance(v, float) else v for k, v in props.items()}  # inf -> null, as pandas does
    geometry = f'{{"type":"Point","coordinates":[{values["lon"]!r},{values["lat"]!r}]}}'
    body = {"type": "Feature", "id": site_id, "gridmap": provenance(st.layer, weights, st.settings)}
    text = json.dumps(body, ensure_ascii=False)
    return (
        text[:-1]
        + f', "geometry": {geometry}, "properties": {json.dumps(props, ensure_ascii=False, allow_nan=False)}}}'
    )


def plain_numbers(site: dict, settings: Settings) -> dict | None:
    values = {"lon": None, "lat": None, "it_load_mw": None,
              "pue": settings.default_pue, "load_factor": settings.default_load_factor}  # fmt: skip
    for name in list(values):
        raw = site.get(name)
        if raw is None or not str(raw).strip():
            if values[name] is None:
                return None
            continue
        if not _PLAIN_NUMBER.match(str(raw)):
            return None
        value = float(raw)
        low, high, low_inclusive, _ = RANGES[name]
        if not (math.isfinite(value) and (value >= low if low_inclusive else value > low) and value <= high):
            return None
        values[name] = value
    return values


def single_metrics(v: dict, st, weights: dict) -> dict:
    found = st.layer.assignment_index(st.settings).assign(np.array([v["lon"]]), np.array([v["lat"]]))
    index = int(found.region[0])
    columns, f = region_inputs(st, index)
    facility = v["it_load_mw"] * v["pue"]
    energy = facility * v["load_factor"] * HOURS_PER_YEAR
    stress = load_stress(columns, np.array([energy if index >= 0 else np.nan]))
    metrics = columns | {"load_stress": pd.Series(stress["load_stress"])}
    components = score_components(metrics, columns_of(st, "layer", st.layer.figures))
    score = float(composite_score(components, weights)[0])
    return {
        "facility_load_mw": facility, "annual_energy_mwh": energy,
        "region_id": f["region_id"], "region_name": f["region_name"], "assignment": str(found.names[0]),
        "renewable_share": f["renewable_share"], "carbon_free_share": f["carbon_free_share"],
        "co2_kg_per_mwh": f["co2_kg_per_mwh"], "annual_co2_tonnes": _co2(energy, f["co2_kg_per_mwh"]),
        "price_cents_per_kwh": f["price_cents_per_kwh"],
        "annual_energy_cost_usd": _cost(energy, f["price_cents_per_kwh"]),
        "demand_growth_share": _div(energy, f["retail_sales_mwh"]),
        "cumulative_demand_growth_share": _div(energy, f["retail_sales_mwh"]) if index >= 0 else None,
        "load_stress": _num(stress["load_stress"][0]),
        "score": _num(score), "rank": 1 if math.isfinite(score) else None,
        "row": 1, "distance_km": _num(found.distance_km[0]),
        **{f"score_{k}": _num(c[0]) for k, c in components.items()},
        **{k: _num(stress[k][0]) for k in ("stress_growth", "stress_capacity_use", "stress_import_dependence")},
    }  # fmt: skip


def region_inputs(st, index: int) -> tuple[dict, dict]:
    """One region's figures as one-row columns (for the core functions) and as scalars; cached.

    Index -1 (no region) gives empty figures, as ``score_sites`` does.
    """
    key = ("region_inputs", index)
    if key not in st.cache:
        row = st.layer.figures.reindex([index]).reset_index(drop=True)
        scalars = {c: _num(row[c].iloc[0]) for c in row.columns if pd.api.types.is_numeric_dtype(row[c])}
        names = {c: None if index < 0 else str(row[c].iloc[0]) for c in ("region_id", "region_name")}
        st.cache[key] = (columns_of(st, ("row", index), row), scalars | names)
    return st.cache[key]


def columns_of(st, key, frame: pd.DataFrame) -> dict:
    """A frame's columns as a dict of Series: the core functions read columns by name, and a dict
    lookup costs nothing next to ``DataFrame.__getitem__`` on the latency-critical path.
    """
    key = ("columns", key)
    if key not in st.cache:
        st.cache[key] = {c: frame[c] for c in frame.columns}
    return st.cache[key]


def _num(value) -> float | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _co2(energy: float, rate: float | None) -> float | None:
    return None if rate is None else energy * rate / 1000.0


def _cost(energy: float, cents: float | None) -> float | None:
    return None if cents is None else energy * cents * 10.0  # cents/kWh = 10 $/MWh


def _div(energy: float, figure: float | None) -> float | None:
    return None if figure is None or figure == 0 else energy / figure
