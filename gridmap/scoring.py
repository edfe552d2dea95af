"""Pure scoring: assign sites to regions, compute grid-impact metrics, cumulative impact, score, rank.

Every formula here is written down in ``docs/methodology.md``. No Flask, no folium, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .assign import assign_parallel
from .config import METHOD_VERSION, Settings, normalise_weights
from .errors import RowError
from .fields import CONTRACT_FIELDS, DETAIL_FIELDS
from .regions import RegionLayer
from .sites import SiteBatch

HOURS_PER_YEAR = 8760
# load_stress: cumulative added demand equal to this share of annual retail sales counts as full
# strain (1.0) on the growth term; 10 % is about a decade of US retail-sales growth at ~1 %/year.
GROWTH_AT_FULL_STRESS = 0.10
SCORE_DECIMALS = 4
REGION_FIGURES = ["renewable_share", "carbon_free_share", "co2_kg_per_mwh", "price_cents_per_kwh"]
STRESS_FIGURES = ["retail_sales_mwh", "summer_capacity_mw", "net_generation_mwh"]


@dataclass
class ScoreResult:
    """Scored sites (contract fields, details, extra input columns), row errors and provenance."""

    frame: pd.DataFrame
    errors: list[RowError] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Counts a planner reads first: sites per assignment and per region, errors."""
        f = self.frame
        return {
            "sites": len(f),
            "errors": len(self.errors),
            "rows_with_errors": len({e.row for e in self.errors}),
            "by_assignment": {k: int(v) for k, v in f["assignment"].value_counts().items()},
            "by_region": {k: int(v) for k, v in f["region_id"].dropna().value_counts().items()},
        }


def score_sites(
    sites: SiteBatch | pd.DataFrame,
    layer: RegionLayer,
    *,
    weights: Mapping[str, float] | None = None,
    settings: Settings | None = None,
) -> ScoreResult:
    """Score validated sites against a region layer.

    Parameters
    ----------
    sites
        A :class:`SiteBatch` from :mod:`gridmap.sites`, or its ``sites`` frame.
    layer
        The region layer.
    weights
        Score weights by name (renewable, carbon, stress, price); default from ``settings``.
    settings
        Assumptions (nearest distance, defaults); ``Settings()`` if omitted.
    """
    settings = settings or Settings()
    weights = normalise_weights(weights if weights is not None else settings.weights)
    batch = sites if isinstance(sites, SiteBatch) else SiteBatch(sites=sites, total_rows=len(sites))
    frame, swapped = drop_swapped(assign_sites(batch.sites, layer, settings=settings), layer, settings=settings)
    totals = region_energy_totals(frame, len(layer.frame))
    frame = compute_metrics(frame, layer, totals, weights=weights)
    frame["rank"] = rank_scores(frame["score"].to_numpy(), frame["demand_growth_share"].to_numpy())
    errors = sorted([*batch.errors, *swapped], key=lambda e: e.row)
    return ScoreResult(frame=order_columns(frame), errors=errors, provenance=provenance(layer, weights, settings))


def assign_sites(sites: pd.DataFrame, layer: RegionLayer, *, settings: Settings) -> pd.DataFrame:
    """Add ``region_index``, ``assignment`` and ``distance_km``, and the site loads and energy."""
    found = assign_parallel(lambda: layer.assignment_index(settings), sites["lon"].to_numpy(), sites["lat"].to_numpy())
    out = sites.copy()
    out["region_index"] = found.region
    out["assignment"] = found.names
    out["distance_km"] = found.distance_km
    out["facility_load_mw"] = out["it_load_mw"] * out["pue"]
    out["annual_energy_mwh"] = out["facility_load_mw"] * out["load_factor"] * HOURS_PER_YEAR
    return out


def drop_swapped(
    assigned: pd.DataFrame, layer: RegionLayer, *, settings: Settings
) -> tuple[pd.DataFrame, list[RowError]]:
    """Turn outside sites whose swapped coordinates fall in a region into row errors.

    A planner's most common mistake is lon and lat in each other's columns. When both values are
    valid either way round (eastern US: lon -77, lat 39 becomes lon 39, lat -77 in Antarctica),
    the swap shows as a site outside every region that would be inside one with the two swapped.
    """
    outside = np.flatnonzero(assigned["assignment"].to_numpy() == "outside")
    lon, lat = assigned["lon"].to_numpy()[outside], assigned["lat"].to_numpy()[outside]
    ok = (np.abs(lon) <= 90) & (np.abs(lat) <= 180)
    found = assign_parallel(lambda: layer.assignment_index(settings), lat[ok], lon[ok])
    hit = found.region >= 0
    if not hit.any():
        return assigned, []
    rows = outside[ok][hit]
    names = layer.figures["region_id"].to_numpy()[found.region[hit]]
    errors = [
        RowError(int(r), "lon", f"lon={a:g}, lat={b:g} is outside every region, but lon={b:g}, lat={a:g} is in "
                 f"{name}: lon and lat look swapped")
        for r, a, b, name in zip(assigned["row"].to_numpy()[rows], lon[ok][hit], lat[ok][hit], names, strict=True)
    ]  # fmt: skip
    keep = np.ones(len(assigned), dtype=bool)
    keep[rows] = False
    return assigned[keep].reset_index(drop=True), errors


def region_energy_totals(assigned: pd.DataFrame, n_regions: int) -> np.ndarray:
    """Annual energy (MWh) of all assigned sites per region index: the cumulative load."""
    idx = assigned["region_index"].to_numpy()
    ok = idx >= 0
    return np.bincount(idx[ok], weights=assigned["annual_energy_mwh"].to_numpy()[ok], minlength=n_regions)


def compute_metrics(
    assigned: pd.DataFrame, layer: RegionLayer, totals: np.ndarray, *, weights: Mapping[str, float]
) -> pd.DataFrame:
    """Region figures, per-site metrics, cumulative impact, load stress and score."""
    idx = assigned["region_index"].to_numpy()
    fig = _figures_for(layer.figures, idx)
    energy = assigned["annual_energy_mwh"].to_numpy()
    sales = fig["retail_sales_mwh"].to_numpy(dtype="float64", na_value=np.nan)
    cumulative = np.where(idx >= 0, totals[np.maximum(idx, 0)], np.nan)
    co2 = fig["co2_kg_per_mwh"].to_numpy(dtype="float64", na_value=np.nan)
    price = fig["price_cents_per_kwh"].to_numpy(dtype="float64", na_value=np.nan)
    new = {name: fig[name].to_numpy() for name in ("region_id", "region_name", *REGION_FIGURES)}
    new["annual_co2_tonnes"] = energy * co2 / 1000.0
    new["annual_energy_cost_usd"] = energy * price * 10.0  # cents/kWh = 10 $/MWh
    new["demand_growth_share"] = energy / sales
    new["cumulative_demand_growth_share"] = cumulative / sales
    new |= load_stress(fig, cumulative)
    components = score_components(pd.DataFrame(new), layer.figures)
    new |= {f"score_{name}": values for name, values in components.items()}
    new["score"] = composite_score(components, weights)
    # one concat instead of ~30 column insertions: pandas' per-insert cost dominates small requests
    kept = assigned.drop(columns=[c for c in new if c in assigned.columns])
    return pd.concat([kept, pd.DataFrame(new, index=assigned.index)], axis=1)


def _figures_for(figures: pd.DataFrame, idx: np.ndarray) -> pd.DataFrame:
    """The region figures the metrics use, per site; all empty where the site has no region."""
    used = figures[["region_id", "region_name", *REGION_FIGURES, *STRESS_FIGURES]]
    return used.reindex(np.where(idx >= 0, idx, -1)).reset_index(drop=True)


def load_stress(fig: pd.DataFrame, cumulative_mwh: np.ndarray) -> dict[str, np.ndarray]:
    """0-1 strain index: mean of added-demand growth, capacity use and import dependence.

    * ``stress_growth`` = min(1, cumulative added MWh / retail sales / 0.10)
    * ``stress_capacity_use`` = min(1, (retail sales + added MWh) / (8760 h x net summer capacity))
    * ``stress_import_dependence`` = clip(1 - net generation / (retail sales + added MWh), 0, 1)
    """
    sales = fig["retail_sales_mwh"].to_numpy(dtype="float64", na_value=np.nan)
    capacity = fig["summer_capacity_mw"].to_numpy(dtype="float64", na_value=np.nan)
    generation = fig["net_generation_mwh"].to_numpy(dtype="float64", na_value=np.nan)
    demand = sales + cumulative_mwh
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.minimum(1.0, cumulative_mwh / sales / GROWTH_AT_FULL_STRESS)
        capacity_use = np.minimum(1.0, demand / (HOURS_PER_YEAR * capacity))
        imports = np.clip(1.0 - generation / demand, 0.0, 1.0)
    stress = np.round((growth + capacity_use + imports) / 3.0, 9)
    return {"stress_growth": growth, "stress_capacity_use": capacity_use,
            "stress_import_dependence": imports, "load_stress": stress}  # fmt: skip


def score_components(metrics: pd.DataFrame, figures: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each component 0-1, higher is better. CO2 and price are scaled to the layer's own range."""
    return {
        "renewable": metrics["renewable_share"].to_numpy(dtype="float64", na_value=np.nan).clip(0, 1),
        "carbon": _lower_is_better(metrics["co2_kg_per_mwh"], figures["co2_kg_per_mwh"]),
        "stress": 1.0 - metrics["load_stress"].to_numpy(dtype="float64", na_value=np.nan),
        "price": _lower_is_better(metrics["price_cents_per_kwh"], figures["price_cents_per_kwh"]),
    }


def _lower_is_better(values: pd.Series, layer_values: pd.Series) -> np.ndarray:
    v = values.to_numpy(dtype="float64", na_value=np.nan)
    lo, hi = layer_values.min(), layer_values.max()
    if not np.isfinite(hi - lo) or hi == lo:
        return np.where(np.isnan(v), np.nan, 1.0)
    return np.clip((hi - v) / (hi - lo), 0.0, 1.0)


def composite_score(components: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """100 x weighted mean of the components; empty if a component with weight > 0 is empty."""
    total = sum(weights.values())
    used = [name for name, w in weights.items() if w > 0]
    acc = sum(weights[name] * components[name] for name in used)
    return np.round(100.0 * acc / total, SCORE_DECIMALS)


def rank_scores(score: np.ndarray, tie_break: np.ndarray) -> pd.array:
    """Rank 1 = best: higher score first, then the smaller demand growth share; ties share a rank."""
    ok = ~np.isnan(score)
    out = np.full(len(score), -1, dtype="int64")
    s, t = score[ok], np.nan_to_num(tie_break[ok], nan=np.inf)
    order = np.lexsort((t, -s))
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (s[order][1:] != s[order][:-1]) | (t[order][1:] != t[order][:-1])
    first_pos = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
    ranks = np.empty(len(order), dtype="int64")
    ranks[order] = first_pos + 1
    out[ok] = ranks
    result = pd.array(out, dtype="Int64")
    result[~ok] = pd.NA
    return result


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Contract fields first, then details, then the input's extra columns."""
    known = set(CONTRACT_FIELDS) | set(DETAIL_FIELDS) | {"region_index"}
    extra = [c for c in frame.columns if c not in known]
    return frame[[*CONTRACT_FIELDS, *DETAIL_FIELDS, *extra]].reset_index(drop=True)


def provenance(layer: RegionLayer, weights: Mapping[str, float], settings: Settings) -> dict:
    """What every output carries: layer, data year, sources, method version, weights, assumptions."""
    return {
        "layer": layer.name,
        "data_year": layer.data_year,
        "sources": list(layer.meta.get("sources", [])),
        "method_version": METHOD_VERSION,
        "weights": dict(weights),
        "assumptions": settings.assumptions(),
    }
