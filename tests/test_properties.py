"""Property-based tests of the core (hypothesis): determinism, order independence, bounds, no loss."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridmap.scoring import score_sites
from gridmap.sites import parse_records

PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

coords = st.tuples(st.floats(-2, 3, allow_nan=False), st.floats(-1, 4, allow_nan=False))
loads = st.floats(0.1, 5000, allow_nan=False)
bad_values = st.sampled_from([float("nan"), float("inf"), -1.0, 0.0, "ten", "", None, 1e400])


@st.composite
def site_records(draw, *, unique_ids: bool = False, allow_bad: bool = True):
    n = draw(st.integers(1, 40))
    records = []
    for i in range(n):
        lon, lat = draw(coords)
        rec = {"site_id": f"s{i}" if unique_ids else draw(st.sampled_from(["a", "b", "c", f"s{i}"])),
               "lon": lon, "lat": lat, "it_load_mw": draw(loads)}  # fmt: skip
        if draw(st.booleans()):
            rec["pue"] = draw(st.floats(1.0, 2.5))
        if draw(st.booleans()):
            rec["load_factor"] = draw(st.floats(0.05, 1.0))
        if allow_bad and draw(st.integers(0, 5)) == 0:
            rec[draw(st.sampled_from(["lon", "lat", "it_load_mw", "pue", "load_factor"]))] = draw(bad_values)
        records.append(rec)
    return records


@PROFILE
@given(records=site_records())
def test_every_row_comes_back_exactly_once(squares, records):
    result = score_sites(parse_records(records), squares)
    scored = result.frame["row"].tolist()
    failed = {e.row for e in result.errors}
    assert len(scored) == len(set(scored))
    assert set(scored).isdisjoint(failed)
    assert set(scored) | failed == set(range(1, len(records) + 1))


@PROFILE
@given(records=site_records())
def test_values_stay_in_their_ranges(squares, records):
    frame = score_sites(parse_records(records), squares).frame
    for col, low, high in [("score", 0, 100), ("load_stress", 0, 1), ("renewable_share", 0, 1),
                           ("carbon_free_share", 0, 1), ("cumulative_demand_growth_share", 0, math.inf)]:  # fmt: skip
        values = frame[col].dropna()
        assert ((values >= low) & (values <= high)).all(), col
    assert (frame["cumulative_demand_growth_share"].fillna(0) >= frame["demand_growth_share"].fillna(0) - 1e-12).all()
    outside = frame["assignment"] == "outside"
    assert frame.loc[outside, ["region_id", "score", "rank"]].isna().all().all()
    ranked = frame["rank"].dropna()
    assert ranked.empty or ranked.min() == 1


@PROFILE
@given(records=site_records())
def test_deterministic(squares, records):
    a = score_sites(parse_records(records), squares)
    b = score_sites(parse_records(records), squares)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.errors == b.errors


@PROFILE
@given(records=site_records(unique_ids=True, allow_bad=False), seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_matter(squares, records, seed):
    shuffled = [records[i] for i in np.random.default_rng(seed).permutation(len(records))]
    cols = ["region_id", "assignment", "load_stress", "cumulative_demand_growth_share", "score", "rank"]
    a = score_sites(parse_records(records), squares).frame.set_index("site_id").sort_index()[cols]
    b = score_sites(parse_records(shuffled), squares).frame.set_index("site_id").sort_index()[cols]
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
