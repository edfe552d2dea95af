"""OGC API - Features (Part 1: Core, GeoJSON, OAS 3.0) under ``/ogc``, for QGIS, GDAL and friends.

Two collections: ``regions`` (the region layer with its figures; simplified geometry unless
``geometry=full``) and ``sites`` (the sample sites, scored with the default weights).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from flask import Blueprint, request, url_for

from .api import (
    GEOJSON,
    GEOMETRY_MODES,
    bbox_param,
    choice_param,
    collection_text,
    int_param,
    json_response,
    points_in,
    region_features,
    regions_in,
    site_features,
    state,
    with_members,
)
from .errors import NotFoundError

bp = Blueprint("ogc", __name__, url_prefix="/ogc")

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"
DEFAULT_LIMIT, MAX_LIMIT = 100, 10_000
COLLECTIONS = {
    "regions": ("Grid regions", "The region layer with its grid figures (generation mix, CO2 rate, price, "
                "retail sales, capacity). Simplified geometry; add geometry=full for full resolution."),
    "sites": ("Sample data-center sites, scored", "Announced large AI data-center campuses, scored with the "
              "default weights (planning load = announced MW)."),
}  # fmt: skip


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict:
    out = {"href": href, "rel": rel, "type": type_}
    return out | {"title": title} if title else out


def check_f() -> None:
    """``f=json`` (or ``geojson``) is the only output; anything else is a 400."""
    choice_param("f", ("json", "geojson"), default="json")


@bp.get("", strict_slashes=False)
def landing():
    """Landing page: links to the API definition, conformance and collections."""
    check_f()
    links = [
        link(url_for(".landing", _external=True), "self", "application/json", "This document"),
        link(url_for("api.openapi_json", _external=True), "service-desc", OPENAPI_TYPE, "The API definition"),
        link(url_for("api.docs_page", _external=True), "service-doc", "text/html", "The API documentation"),
        link(url_for(".conformance", _external=True), "conformance", "application/json", "Conformance classes"),
        link(url_for(".collections", _external=True), "data", "application/json", "Collections"),
    ]
    layer = state().layer
    return json_response({"title": "gridmap", "description": f"Grid-impact layers: {layer.name}", "links": links})


@bp.get("/conformance")
def conformance():
    """The conformance classes this server implements."""
    check_f()
    return json_response({"conformsTo": CONFORMANCE})


@bp.get("/collections")
def collections():
    """Both collections with their extents and links."""
    check_f()
    links = [link(url_for(".collections", _external=True), "self", "application/json")]
    return json_response({"links": links, "collections": [describe(cid) for cid in COLLECTIONS]})


@bp.get("/collections/<collection_id>")
def collection(collection_id: str):
    """One collection's description."""
    check_f()
    known(collection_id)
    return json_response(describe(collection_id))


@bp.get("/collections/<collection_id>/items")
def items(collection_id: str):
    """A page of a collection's features (``limit``, ``offset``, ``bbox``), with next/prev links."""
    check_f()
    known(collection_id)
    choice_param("geometry", GEOMETRY_MODES, default="simplified")
    limit = int_param("limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    offset = int_param("offset", default=0, low=0, high=2**31 - 1)
    features, positions = collection_features(collection_id, bbox_param())
    page = positions[offset : offset + limit]
    members = {
        "gridmap": provenance(collection_id),
        "numberMatched": len(positions),
        "numberReturned": len(page),
        "timeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "links": page_links(collection_id, offset, limit, len(positions)),
    }
    return json_response(collection_text([features[i] for i in page], members), mimetype=GEOJSON)


@bp.get("/collections/<collection_id>/items/<feature_id>")
def item(collection_id: str, feature_id: str):
    """One feature by its id (``region_id`` or ``site_id``)."""
    check_f()
    known(collection_id)
    choice_param("geometry", GEOMETRY_MODES, default="simplified")
    ids = feature_ids(collection_id)
    hit = np.flatnonzero(ids == feature_id)
    if len(hit) == 0:
        raise NotFoundError(f"collection {collection_id!r} has no feature {feature_id!r}")
    features, _ = collection_features(collection_id, None)
    links = [
        link(url_for(".item", collection_id=collection_id, feature_id=feature_id, _external=True), "self", GEOJSON),
        link(url_for(".collection", collection_id=collection_id, _external=True), "collection", "application/json"),
    ]
    members = {"gridmap": provenance(collection_id), "links": links}
    return json_response(with_members(features[int(hit[0])], members), mimetype=GEOJSON)


# ---- helpers -----------------------------------------------------------------------------------


def known(collection_id: str) -> None:
    if collection_id not in COLLECTIONS:
        raise NotFoundError(f"unknown collection {collection_id!r}; collections: {', '.join(COLLECTIONS)}")


def provenance(collection_id: str) -> dict:
    st = state()
    return st.sample.provenance if collection_id == "sites" else st.layer.provenance()


def feature_ids(collection_id: str) -> np.ndarray:
    st = state()
    frame = st.sample.frame if collection_id == "sites" else st.layer.figures
    column = "site_id" if collection_id == "sites" else "region_id"
    return frame[column].astype(str).to_numpy()


def collection_features(collection_id: str, box) -> tuple[list[str], np.ndarray]:
    """All serialised features of a collection and the positions matching the bbox."""
    st = state()
    if collection_id == "sites":
        if "site_features" not in st.cache:
            st.cache["site_features"] = site_features(st.sample.frame)
        return st.cache["site_features"], points_in(st.sample.frame, box)
    mode = choice_param("geometry", GEOMETRY_MODES, default="simplified")
    return region_features(mode), regions_in(box)


def extent(collection_id: str) -> list[float]:
    st = state()
    if collection_id == "sites":
        f = st.sample.frame
        return [float(f["lon"].min()), float(f["lat"].min()), float(f["lon"].max()), float(f["lat"].max())]
    return [float(v) for v in st.layer.frame.total_bounds]


def describe(collection_id: str) -> dict:
    title, description = COLLECTIONS[collection_id]
    return {
        "id": collection_id,
        "title": title,
        "description": description,
        "itemType": "feature",
        "crs": [CRS84],
        "extent": {"spatial": {"bbox": [extent(collection_id)], "crs": CRS84}},
        "links": [
            link(url_for(".collection", collection_id=collection_id, _external=True), "self", "application/json"),
            link(url_for(".items", collection_id=collection_id, _external=True), "items", GEOJSON, title),
        ],
    }


def page_links(collection_id: str, offset: int, limit: int, matched: int) -> list[dict]:
    """self, next (if more) and prev (if not the first page), keeping the other query parameters."""
    args = {k: v for k, v in request.args.items() if k not in ("offset", "limit")}

    def href(start: int) -> str:
        return url_for(".items", collection_id=collection_id, _external=True, **args, offset=start, limit=limit)

    links = [link(href(offset), "self", GEOJSON, "This page")]
    if offset + limit < matched:
        links.append(link(href(offset + limit), "next", GEOJSON, "Next page"))
    if offset > 0:
        links.append(link(href(max(0, offset - limit)), "prev", GEOJSON, "Previous page"))
    return links
