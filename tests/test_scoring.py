"""Metrics, cumulative impact, load stress, weights, score and rank, on the unit squares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gridmap.config import DEFAULT_WEIGHTS, Settings
from gridmap.errors import WeightsError
from gridmap.scoring import CONTRACT_FIELDS, rank_scores, score_sites
from gridmap.sites import parse_records


def score(squares, records, **kw):
    return score_sites(parse_records(records), squares, **kw)


def site(site_id, lon, lat, mw=100.0, **extra):
    return {"site_id": site_id, "lon": lon, "lat": lat, "it_load_mw": mw, **extra}


def test_contract_fields_present_and_first(squares):
    frame = score(squares, [site("a", 0.5, 0.5)]).frame
    assert list(frame.columns[: len(CONTRACT_FIELDS)]) == CONTRACT_FIELDS


def test_metric_formulas(squares):
    row = score(squares, [site("a", 0.5, 0.5, mw=100, pue=1.25, load_factor=0.5)]).frame.iloc[0]
    energy = 100 * 1.25 * 0.5 * 8760
    assert row["facility_load_mw"] == pytest.approx(125)
    assert row["annual_energy_mwh"] == pytest.approx(energy)
    assert (row["region_id"], row["region_name"], row["assignment"]) == ("A", "Region A", "inside")
    assert row["renewable_share"] == 0.8 and row["carbon_free_share"] == 0.9
    assert row["annual_co2_tonnes"] == pytest.approx(energy * 100 / 1000)
    assert row["annual_energy_cost_usd"] == pytest.approx(energy * 5.0 * 10)
    assert row["demand_growth_share"] == pytest.approx(energy / 1_000_000)


def test_load_stress_formula(squares):
    row = score(squares, [site("a", 0.5, 0.5, mw=10, pue=1.0, load_factor=1.0)]).frame.iloc[0]
    added = 10 * 8760
    growth = min(1, added / 1_000_000 / 0.10)
    capacity_use = (1_000_000 + added) / (8760 * 400)
    imports = max(0.0, 1 - 2_000_000 / (1_000_000 + added))
    assert row["stress_growth"] == pytest.approx(growth)
    assert row["stress_capacity_use"] == pytest.approx(capacity_use)
    assert row["stress_import_dependence"] == pytest.approx(imports)
    assert row["load_stress"] == pytest.approx((growth + capacity_use + imports) / 3)


def test_cumulative_share_sums_sites_of_the_same_region(squares):
    frame = score(squares, [site("a1", 0.2, 0.2, mw=50), site("a2", 0.8, 0.8, mw=30), site("b", 1.5, 0.5)]).frame
    a = frame[frame["region_id"] == "A"]
    assert a["cumulative_demand_growth_share"].tolist() == pytest.approx([a["demand_growth_share"].sum()] * 2)
    b = frame[frame["region_id"] == "B"].iloc[0]
    assert b["cumulative_demand_growth_share"] == pytest.approx(b["demand_growth_share"])


def test_more_load_in_a_region_raises_its_stress(squares):
    alone = score(squares, [site("a", 0.5, 0.5)]).frame.iloc[0]
    crowded = score(squares, [site("a", 0.5, 0.5), site("big", 0.6, 0.6, mw=2000)]).frame.iloc[0]
    assert crowded["load_stress"] > alone["load_stress"]
    assert crowded["score"] < alone["score"]


def test_outside_sites_are_kept_with_empty_metrics(squares):
    result = score(squares, [site("in", 0.5, 0.5), site("out", 50, 50)])
    out = result.frame.set_index("site_id").loc["out"]
    assert out["assignment"] == "outside"
    for col in ("region_id", "renewable_share", "co2_kg_per_mwh", "load_stress", "score", "rank"):
        assert pd.isna(out[col]), col
    assert out["annual_energy_mwh"] > 0  # the site's own load is still known


def test_missing_region_figure_empties_metric_and_score_not_invented(squares):
    row = score(squares, [site("c", 0.5, 2.5)]).frame.iloc[0]
    assert pd.isna(row["price_cents_per_kwh"]) and pd.isna(row["annual_energy_cost_usd"])
    assert pd.isna(row["score"]) and pd.isna(row["rank"])
    no_price = score(squares, [site("c", 0.5, 2.5)], weights={"renewable": 1, "price": 0}).frame.iloc[0]
    assert no_price["score"] == pytest.approx(50.0)


def test_weights_change_the_score(squares):
    records = [site("a", 0.5, 0.5), site("b", 1.5, 0.5)]
    only_renewable = score(squares, records, weights={"renewable": 1}).frame.set_index("site_id")
    assert only_renewable.loc["a", "score"] == pytest.approx(80.0)
    assert only_renewable.loc["b", "score"] == pytest.approx(10.0)
    only_price = score(squares, records, weights={"price": 1}).frame.set_index("site_id")
    # price scaled to the layer's own range: A is the cheapest (5) -> 1, B the dearest (15) -> 0
    assert (only_price.loc["a", "score"], only_price.loc["b", "score"]) == (100.0, 0.0)


def test_default_weights_documented_value(squares):
    result = score(squares, [site("a", 0.5, 0.5)])
    assert result.provenance["weights"] == dict(DEFAULT_WEIGHTS)
    row = result.frame.iloc[0]
    expected = (
        100 * sum(DEFAULT_WEIGHTS[k] * row[f"score_{k}"] for k in DEFAULT_WEIGHTS) / sum(DEFAULT_WEIGHTS.values())
    )
    assert row["score"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "weights", [{"renewable": -1}, {"wind": 1}, {"renewable": 0, "carbon": 0}, {"price": float("nan")}]
)
def test_bad_weights(squares, weights):
    with pytest.raises(WeightsError):
        score(squares, [site("a", 0.5, 0.5)], weights=weights)


def test_rank_best_first_ties_share_and_smaller_load_wins(squares):
    records = [
        site("b", 1.5, 0.5),
        site("a_big", 0.4, 0.4, mw=200),
        site("a_small", 0.6, 0.6, mw=10),
        site("a_small2", 0.7, 0.7, mw=10),
        site("out", 9, 9),
    ]
    frame = score(squares, records).frame.set_index("site_id")
    assert frame.loc["a_small", "rank"] == frame.loc["a_small2", "rank"] == 1
    assert frame.loc["a_big", "rank"] == 3
    assert frame.loc["b", "rank"] == 4
    assert pd.isna(frame.loc["out", "rank"])


def test_rank_scores_unit():
    ranks = rank_scores(np.array([50.0, np.nan, 70.0, 50.0, 50.0]), np.array([0.2, 0.1, 0.5, 0.1, 0.2]))
    assert ranks.tolist() == [3, pd.NA, 1, 2, 3]


def test_row_order_does_not_change_results(squares):
    records = [site(f"s{i}", 0.1 + 0.05 * (i % 18), 0.5 + 0.1 * (i % 3), mw=10 + i) for i in range(40)]
    a = score(squares, records).frame.set_index("site_id").sort_index()
    b = score(squares, records[::-1]).frame.set_index("site_id").sort_index()
    cols = ["region_id", "score", "rank", "load_stress", "cumulative_demand_growth_share"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=False, rtol=1e-12)


def test_errors_travel_with_the_result(squares):
    from gridmap.sites import parse_csv_text

    batch = parse_csv_text("site_id,lon,lat,it_load_mw\na,0.5,0.5,10\nb,0.5,0.5,-1\n")
    result = score_sites(batch, squares)
    assert len(result.frame) == 1 and [(e.row, e.field) for e in result.errors] == [(2, "it_load_mw")]
    assert result.summary()["rows_with_errors"] == 1


def test_provenance(squares):
    prov = score(squares, [site("a", 0.5, 0.5)], settings=Settings(nearest_km=2)).provenance
    assert prov["layer"] == "squares" and prov["method_version"].startswith("gridmap-score/")
    assert prov["assumptions"]["nearest_km"] == 2


def test_real_layer_scores_are_bounded(us_layer):
    from gridmap.sites import read_sites
    from tests.conftest import ROOT

    result = score_sites(read_sites(ROOT / "data" / "sample_sites.csv"), us_layer)
    frame = result.frame
    assert frame["score"].between(0, 100).all()
    assert frame["load_stress"].between(0, 1).all()
    assert sorted(frame["rank"].tolist())[0] == 1
    assert result.provenance["data_year"] == 2023


def test_swapped_lon_lat_inside_the_layer_is_a_row_error(squares):
    """lon=2.5, lat=0.5 is outside every square, but lon=0.5, lat=2.5 is inside C: a likely swap."""
    result = score(squares, [site("ok", 0.5, 0.5), site("swapped", 2.5, 0.5), site("far", 50, 50)])
    assert result.frame["site_id"].tolist() == ["ok", "far"]
    (err,) = result.errors
    assert (err.row, err.field) == (2, "lon") and "swapped" in err.message and "in C" in err.message
