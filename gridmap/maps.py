"""Build folium maps of a region layer and scored sites; no Flask here.

The map is one folium ``Map`` (``tiles=None``: the regions are the base map) plus one element that
carries all data as a single JSON block: the regions as GeoJSON and the sites as one compact
row array. ``static/gridmap.js`` draws the choropleth, the metric switcher, the legend and the
clustered site markers client-side in one loop, and builds a popup only when a site is clicked,
so 100,000 sites stay a few MB of HTML instead of one folium Marker (and one script block) each.

Assets: folium's default asset lists point at CDNs. They are replaced on each map instance (never
on the class) by local URLs from :mod:`gridmap.assets`, or inlined for a standalone file, and
:func:`check_offline` raises if any remote script, stylesheet, font or image is left.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

import folium
import numpy as np
import pandas as pd
import shapely
from branca.element import Element
from folium.elements import JSCSSMixin
from folium.template import Template

from .assets import asset_files, asset_urls
from .config import METHOD_VERSION
from .errors import GridmapError
from .regions import RegionLayer
from .scoring import CONTRACT_FIELDS, DETAIL_FIELDS, ScoreResult, load_stress

MAX_ZOOM = 14
REGION_DECIMALS = 3  # ~100 m: far below what a region map at these zooms can show
# column -> (label, higher is better) of the metrics a viewer can colour the regions by
METRICS = {
    "renewable_share": ("Renewable share", True),
    "carbon_free_share": ("Carbon-free share", True),
    "co2_kg_per_mwh": ("CO2 rate", False),
    "price_cents_per_kwh": ("Industrial price", False),
    "load_stress": ("Load stress (before new sites)", False),
}
REGION_FIGURES = [
    "renewable_share", "carbon_free_share", "co2_kg_per_mwh", "price_cents_per_kwh", "load_stress",
    "retail_sales_mwh", "summer_capacity_mw", "net_generation_mwh",
]  # fmt: skip
SITE_COLUMNS = [
    "site_id", "name", "lon", "lat", "score", "rank", "region_id", "assignment", "distance_km",
    "it_load_mw", "pue", "load_factor", "facility_load_mw", "annual_energy_mwh", "annual_co2_tonnes",
    "annual_energy_cost_usd", "demand_growth_share", "cumulative_demand_growth_share", "load_stress",
    "score_renewable", "score_carbon", "score_stress", "score_price", "row",
]  # fmt: skip
# shorter numbers, same meaning: 1 m positions, whole MWh / t / USD, scores to 0.01 of 100
SITE_DECIMALS = {
    "lon": 5, "lat": 5, "score": 2, "distance_km": 3, "facility_load_mw": 3, "annual_energy_mwh": 0,
    "annual_co2_tonnes": 0, "annual_energy_cost_usd": 0, "load_stress": 4, "score_renewable": 4,
    "score_carbon": 4, "score_stress": 4, "score_price": 4,
}  # fmt: skip
LOAD_STRESS_META = {
    "unit": "index 0-1",
    "source": f"computed by gridmap ({METHOD_VERSION}) from retail sales, net summer capacity and net generation",
}
_REMOTE = re.compile(
    r"<(?:script|img|iframe|source|audio|video|embed|input)\b[^>]*\bsrc\s*=\s*[\"']?\s*(?:https?:)?//"
    r"|<link\b[^>]*\bhref\s*=\s*[\"']?\s*(?:https?:)?//"
    r"|url\(\s*[\"']?\s*(?:https?:)?//"
    r"|@import\s+(?:url\()?\s*[\"']?\s*(?:https?:)?//",
    re.IGNORECASE,
)
_DATA_BLOCK = re.compile(r'<script type="application/json"[^>]*>.*?</script>', re.DOTALL)


class RemoteAssetError(GridmapError):
    """A rendered map still refers to a script, style, font or image on another host."""


@dataclass(frozen=True)
class MapParts:
    """A rendered map split for embedding in a page: ``head`` (styles/scripts), ``body``, ``script``."""

    head: str
    body: str
    script: str


class _Raw(Element):
    """Markup added as is.

    branca compiles an Element's text as a Jinja template: seconds for a 20 MB data block, and
    ``{{`` or ``{#`` in inlined vendor code would be misread.
    """

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def render(self, **kwargs) -> str:
        return self.text


class _GridmapLayer(JSCSSMixin):
    """The regions, sites and settings as one JSON block, drawn by ``gridmap.init`` in gridmap.js."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        window.gridmapView = gridmap.init({{ this._parent.get_name() }},
            document.getElementById("{{ this.get_name() }}"));
        {% endmacro %}
        """
    )

    def __init__(self, payload: str):
        super().__init__()
        self._name = "GridmapLayer"
        self.payload = payload
        self.default_js = []
        self.default_css = []

    def render(self, **kwargs) -> None:
        block = f'<script type="application/json" id="{self.get_name()}">{self.payload}</script>'
        self.get_root().html.add_child(_Raw(block), name=self.get_name())
        super().render(**kwargs)


def build_map(
    layer: RegionLayer,
    result: ScoreResult | None = None,
    *,
    metric: str = "renewable_share",
    asset_base: str | None = "/assets",
    max_sites: int = 100_000,
) -> folium.Map:
    """Build a folium map of ``layer`` as a choropleth with the scored sites of ``result`` on top.

    Parameters
    ----------
    layer
        The region layer; its simplified ``display`` geometry is drawn.
    result
        Scored sites; the ``max_sites`` best-ranked are drawn and the page says so if there are more.
    metric
        The region metric shown first (a key of :data:`METRICS`).
    asset_base
        URL prefix of the asset route (``/assets``); ``None`` inlines the vendor files into the
        HTML instead, for a standalone file that works from disk.
    max_sites
        Most sites drawn.
    """
    if metric not in METRICS:
        raise GridmapError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    frame = result.frame if result is not None else None
    sites, note = _capped_sites(frame, max_sites)
    m = folium.Map(location=_centre(layer, sites), zoom_start=4, tiles=None, min_zoom=2, max_zoom=MAX_ZOOM)
    # tiles=None drops max_zoom, and MarkerCluster needs it on the map
    m.options["maxZoom"] = MAX_ZOOM
    m.fit_bounds(_bounds(layer, sites))
    _use_local_assets(m, asset_base)
    weights = (result.provenance or {}).get("weights", {}) if result is not None else {}
    m.add_child(_GridmapLayer(_payload(layer, sites, metric=metric, weights=weights, note=note)))
    return m


def render_html(m: folium.Map) -> str:
    """Render the whole map as one HTML document, checked to load nothing from another host."""
    return check_offline(m.get_root().render())


def render_parts(m: folium.Map) -> MapParts:
    """Render the map split into head, body and script for a page template, checked for remote assets."""
    root = m.get_root()
    check_offline(root.render())
    return MapParts(head=root.header.render(), body=root.html.render(), script=root.script.render())


def write_html(m: folium.Map, path: str | Path) -> Path:
    """Write the map as a standalone HTML file, atomically."""
    from .outputs import atomic_path

    html = render_html(m)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return Path(path)


def check_offline(html: str) -> str:
    """Return ``html`` unchanged, or raise :class:`RemoteAssetError` on any remote asset reference.

    The JSON data blocks are skipped: they are data (site names may be URLs), not markup.
    """
    markup = _DATA_BLOCK.sub("", html)
    hit = _REMOTE.search(markup)
    if hit:
        raise RemoteAssetError(f"map HTML refers to a remote asset: {markup[hit.start() : hit.end() + 80]!r}")
    return html


def _use_local_assets(m: folium.Map, asset_base: str | None) -> None:
    """Replace folium's CDN lists on this instance only (add_js_link would edit the class's list)."""
    if asset_base is not None:
        urls = asset_urls(asset_base)
        m.default_js, m.default_css = urls["js"], urls["css"]
        return
    m.default_js, m.default_css = [], []
    files = asset_files()
    for i, path in enumerate(files["css"]):
        m.get_root().header.add_child(_Raw(f"<style>{_inline_css(path)}</style>"), name=f"gridmap_css_{i}")
    for i, path in enumerate(files["js"]):
        script = path.read_text(encoding="utf-8").replace("</script", "<\\/script")
        m.get_root().header.add_child(_Raw(f"<script>{script}</script>"), name=f"gridmap_js_{i}")


def _inline_css(path: Path) -> str:
    """Return CSS text with its relative image URLs turned into data: URIs (no file beside the HTML)."""

    def embed(match: re.Match) -> str:
        target = path.parent / match.group(1)
        if not target.is_file():
            return match.group(0)
        return f"url(data:image/png;base64,{base64.b64encode(target.read_bytes()).decode()})"

    return re.sub(r"url\((images/[\w.-]+\.png)\)", embed, path.read_text(encoding="utf-8"))


def ranked_sites(frame: pd.DataFrame) -> pd.DataFrame:
    """Return sites in the order the map sends them: by rank, unscored last, input order within a rank."""
    return frame.sort_values("rank", kind="stable", na_position="last").reset_index(drop=True)


def _capped_sites(frame: pd.DataFrame | None, max_sites: int) -> tuple[pd.DataFrame | None, str | None]:
    """Return sites in rank order (unscored last), at most ``max_sites``, and a note when some are left off."""
    if frame is None:
        return None, None
    ordered = ranked_sites(frame)
    if len(ordered) <= max_sites:
        return ordered, None
    note = (f"The map shows the {max_sites:,} best-ranked of {len(ordered):,} sites "
            f"(map_max_sites); download the result for all of them.")  # fmt: skip
    return ordered.head(max_sites), note


def _centre(layer: RegionLayer, sites: pd.DataFrame | None) -> list[float]:
    (south, west), (north, east) = _bounds(layer, sites)
    return [(south + north) / 2, (west + east) / 2]


def _bounds(layer: RegionLayer, sites: pd.DataFrame | None) -> list[list[float]]:
    """Fit the sites if any, else the regions' representative points.

    A layer that crosses the antimeridian (the US with the Aleutians) would otherwise span the world.
    """
    if sites is not None and len(sites):
        lon, lat = sites["lon"].to_numpy(), sites["lat"].to_numpy()
    else:
        points = shapely.point_on_surface(layer.display.geometry.values)
        lon, lat = shapely.get_x(points), shapely.get_y(points)
    pad = 0.5
    return [[float(lat.min()) - pad, float(lon.min()) - pad], [float(lat.max()) + pad, float(lon.max()) + pad]]


def _payload(layer: RegionLayer, sites: pd.DataFrame | None, *, metric: str, weights: dict, note: str | None) -> str:
    """Build the JSON block; regions GeoJSON and site rows are serialised by geopandas/pandas in C."""
    head = {
        "metric": metric,
        "metrics": _metric_meta(layer),
        "layer": {"name": layer.name, "data_year": layer.data_year, "sources": layer.meta.get("sources", [])},
        "weights": weights,
        "note": note,
        "method_version": METHOD_VERSION,
    }
    regions, sites_json = _regions_json(layer), _sites_json(sites)
    return _script_safe(f'{json.dumps(head, allow_nan=False)[:-1]},"regions":{regions},"sites":{sites_json}}}')


def _script_safe(text: str) -> str:
    """Make JSON unable to close its <script> element or open markup: escape <, > and & in it."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _metric_meta(layer: RegionLayer) -> list[dict]:
    columns = layer.meta.get("columns", {})
    out = []
    for key, (label, higher_is_better) in METRICS.items():
        meta = LOAD_STRESS_META if key == "load_stress" else columns.get(key) or {}
        out.append({"key": key, "label": label, "unit": meta.get("unit"), "source": meta.get("source"),
                    "higher_is_better": higher_is_better})  # fmt: skip
    return out


def region_figures(layer: RegionLayer) -> pd.DataFrame:
    """Return the figures a map shows per region, with the region's own load stress before any new site."""
    figures = layer.figures
    out = figures[["region_id", "region_name"]].copy()
    for col in REGION_FIGURES:
        if col == "load_stress":
            out[col] = load_stress(figures, np.zeros(len(figures)))["load_stress"]
        else:
            out[col] = figures[col]
    return out


def _regions_json(layer: RegionLayer) -> str:
    geoms = shapely.transform(layer.display.geometry.values, lambda xy: np.round(xy, REGION_DECIMALS))
    gdf = region_figures(layer).set_geometry(geoms, crs=layer.display.crs)
    return gdf.to_json(drop_id=True, na="null", separators=(",", ":"))


def _sites_json(sites: pd.DataFrame | None) -> str:
    """Serialise sites as ``{"columns": [...], "data": [[...], ...]}``; extra columns as text."""
    if sites is None:
        return "null"
    known = set(CONTRACT_FIELDS) | set(DETAIL_FIELDS) | {"region_index"}
    extra = [c for c in sites.columns if c not in known]
    table = sites[[c for c in SITE_COLUMNS if c in sites.columns]].copy()
    for col, decimals in SITE_DECIMALS.items():
        if col in table:
            rounded = table[col].round(decimals)
            table[col] = rounded.astype("Int64") if decimals == 0 else rounded  # "92175", not "92175.0"
    for col in ("site_id", "name"):
        table[col] = table[col].astype("string")
    for col in extra:
        table[f"extra:{col}"] = sites[col].astype("string")
    return table.to_json(orient="split", index=False, double_precision=6)
