"""Field names of the site and result contract (public interface: keep them exactly)."""

from __future__ import annotations

SITE_FIELDS = ["site_id", "name", "lon", "lat", "it_load_mw", "pue", "load_factor"]
CONTRACT_FIELDS = [
    *SITE_FIELDS, "facility_load_mw", "annual_energy_mwh", "region_id", "region_name", "assignment",
    "renewable_share", "carbon_free_share", "co2_kg_per_mwh", "annual_co2_tonnes", "price_cents_per_kwh",
    "annual_energy_cost_usd", "demand_growth_share", "cumulative_demand_growth_share", "load_stress",
    "score", "rank",
]  # fmt: skip
DETAIL_FIELDS = [
    "row", "distance_km", "score_renewable", "score_carbon", "score_stress", "score_price",
    "stress_growth", "stress_capacity_use", "stress_import_dependence",
]  # fmt: skip
PROVENANCE_COLUMNS = ("layer", "data_year", "method_version")
# an input column with one of these names would be overwritten by a result: refuse it
RESERVED_INPUT_COLUMNS = frozenset(CONTRACT_FIELDS[len(SITE_FIELDS) :]) | set(DETAIL_FIELDS) | {
    *PROVENANCE_COLUMNS, "region_index", "geometry"}  # fmt: skip
