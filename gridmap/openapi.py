"""The OpenAPI 3.0 document of the API and the OGC endpoints, and its plain HTML rendering.

The HTML page is rendered on the server from the same document: no JavaScript, no CDN.
"""

from __future__ import annotations

from markupsafe import escape

from .config import METHOD_VERSION, WEIGHT_NAMES
from .problem import TYPE_SLUGS

NUM = {"type": "number"}
NULLNUM = {"type": "number", "nullable": True}
STR = {"type": "string"}
GEOJSON = "application/geo+json"
PROBLEM = "application/problem+json"
OPENAPI_MEDIA = "application/vnd.oai.openapi+json;version=3.0"
PROVENANCE_HEADERS = {
    "X-Gridmap-Layer": "Name of the region layer.",
    "X-Gridmap-Data-Year": "Data year of the layer's figures.",
    "X-Gridmap-Method": "Scoring method version.",
}
PROBLEM_TEXT = {
    400: "A query parameter or the body cannot be read (bad bbox, unknown geometry mode, malformed JSON, empty body).",
    404: "Unknown region, collection or feature.",
    413: "The body is larger than max_body_bytes, or has more than max_sites sites.",
    415: "The body's Content-Type is not application/json, application/geo+json or text/csv.",
    422: "The input is readable but not usable: missing fields, invalid values (see errors), bad weights.",
    500: "A server error; the detail is generic and the cause is logged.",
}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def schemas() -> dict:
    """The component schemas (responses and request bodies)."""
    # Ranges are in the descriptions, not the schema: a row outside them is not a bad request but
    # a row error returned beside the other rows' scores (422 only if no row is valid).
    site_input = {
        "type": "object",
        "required": ["lon", "lat", "it_load_mw"],
        "description": "One candidate site. Other members are kept and echoed as extra properties.",
        "properties": {
            "site_id": {**STR, "description": "Unique per request; default row-<n>."},
            "name": STR,
            "lon": {**NUM, "description": "Longitude, WGS84 degrees, in [-180, 180]."},
            "lat": {**NUM, "description": "Latitude, WGS84 degrees, in [-90, 90]."},
            "it_load_mw": {**NUM, "description": "IT load in MW, > 0 and at most 1e6 (1,000,000)."},
            "pue": {**NUM, "description": "Power usage effectiveness in [1, 5]; default setting default_pue."},
            "load_factor": {**NUM, "description": "In (0, 1]; default setting default_load_factor."},
        },
    }
    scored = {
        "type": "object",
        "required": ["site_id", "lon", "lat", "region_id", "assignment", "score", "rank"],
        "properties": {
            "site_id": STR,
            "name": {**STR, "nullable": True},
            "lon": NUM,
            "lat": NUM,
            "it_load_mw": NUM,
            "pue": NUM,
            "load_factor": NUM,
            "facility_load_mw": NULLNUM,
            "annual_energy_mwh": NULLNUM,
            "region_id": {**STR, "nullable": True},
            "region_name": {**STR, "nullable": True},
            "assignment": {"type": "string", "enum": ["inside", "boundary", "nearest", "outside"]},
            **{
                k: NULLNUM
                for k in (
                    "renewable_share",
                    "carbon_free_share",
                    "co2_kg_per_mwh",
                    "annual_co2_tonnes",
                    "price_cents_per_kwh",
                    "annual_energy_cost_usd",
                    "demand_growth_share",
                    "cumulative_demand_growth_share",
                    "load_stress",
                    "score",
                    "distance_km",
                )
            },
            "rank": {"type": "integer", "nullable": True, "minimum": 1},
            "row": {"type": "integer"},
        },
    }
    region_props = {
        "type": "object",
        "required": ["region_id", "region_name"],
        "properties": {
            "region_id": STR,
            "region_name": STR,
            **{
                k: NULLNUM
                for k in (
                    "renewable_share",
                    "carbon_free_share",
                    "co2_kg_per_mwh",
                    "price_cents_per_kwh",
                    "retail_sales_mwh",
                    "summer_capacity_mw",
                    "net_generation_mwh",
                )
            },
        },
    }
    return {
        "RowError": _object({"row": {"type": "integer"}, "field": STR, "message": STR}, ["row", "field", "message"]),
        "Problem": _object(
            {
                "type": STR,
                "title": STR,
                "status": {"type": "integer"},
                "detail": STR,
                "errors": {"type": "array", "items": ref("RowError")},
                "instance": STR,
            },
            ["type", "title", "status", "detail", "errors"],
        ),
        "Provenance": _object(
            {
                "layer": STR,
                "data_year": {"type": "integer", "nullable": True},
                "method_version": STR,
                "sources": {"type": "array", "items": STR},
                "weights": {"type": "object", "additionalProperties": NUM},
                "assumptions": {"type": "object", "additionalProperties": NUM},
            },
            ["layer", "data_year", "method_version"],
        ),
        "Link": _object({"href": STR, "rel": STR, "type": STR, "title": STR}, ["href", "rel"]),
        "PointGeometry": _object(
            {
                "type": {"type": "string", "enum": ["Point"]},
                "coordinates": {"type": "array", "items": NUM, "minItems": 2},
            },
            ["type", "coordinates"],
        ),
        "RegionGeometry": {
            **_object(
                {"type": {"type": "string", "enum": ["Polygon", "MultiPolygon"]}, "coordinates": {"type": "array"}},
                ["type", "coordinates"],
            ),
            "nullable": True,
        },
        "SiteInput": site_input,
        "ScoredSite": scored,
        "RegionProperties": region_props,
        "RegionFeature": _feature(ref("RegionGeometry"), ref("RegionProperties")),
        "ScoredSiteFeature": _feature(ref("PointGeometry"), ref("ScoredSite")),
        "RegionCollection": _object(
            {
                "type": {"type": "string", "enum": ["FeatureCollection"]},
                "gridmap": ref("Provenance"),
                "numberMatched": {"type": "integer"},
                "features": {"type": "array", "items": ref("RegionFeature")},
            },
            ["type", "gridmap", "features"],
        ),
        "RegionTotal": _object(
            {
                "region_id": STR,
                "region_name": STR,
                "sites": {"type": "integer"},
                "annual_energy_mwh": NULLNUM,
                "cumulative_demand_growth_share": NULLNUM,
                "load_stress": NULLNUM,
            },
            ["region_id", "sites"],
        ),
        "ScoredCollection": _object(
            {
                "type": {"type": "string", "enum": ["FeatureCollection"]},
                "gridmap": ref("Provenance"),
                "summary": {"type": "object"},
                "regions": {"type": "array", "items": ref("RegionTotal")},
                "errors": {"type": "array", "items": ref("RowError")},
                "features": {"type": "array", "items": ref("ScoredSiteFeature")},
            },
            ["type", "gridmap", "summary", "regions", "errors", "features"],
        ),
        "Meta": _object(
            {
                "layer": STR,
                "data_year": {"type": "integer", "nullable": True},
                "method_version": STR,
                "sources": {"type": "array", "items": STR},
                "region_count": {"type": "integer"},
                "columns": {"type": "object"},
                "weight_names": {"type": "array", "items": STR},
                "default_weights": {"type": "object", "additionalProperties": NUM},
                "assumptions": {"type": "object", "additionalProperties": NUM},
                "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            ["layer", "data_year", "method_version", "sources", "default_weights", "assumptions"],
        ),
        "LandingPage": _object(
            {"title": STR, "description": STR, "links": {"type": "array", "items": ref("Link")}}, ["links"]
        ),
        "Conformance": _object({"conformsTo": {"type": "array", "items": STR}}, ["conformsTo"]),
        "Collection": _object(
            {
                "id": STR,
                "title": STR,
                "description": STR,
                "itemType": STR,
                "crs": {"type": "array", "items": STR},
                "extent": {"type": "object"},
                "links": {"type": "array", "items": ref("Link")},
            },
            ["id", "links"],
        ),
        "Collections": _object(
            {
                "links": {"type": "array", "items": ref("Link")},
                "collections": {"type": "array", "items": ref("Collection")},
            },
            ["links", "collections"],
        ),
        "OgcFeature": _object(
            {
                "type": {"type": "string", "enum": ["Feature"]},
                "id": STR,
                "geometry": {"type": "object", "nullable": True},
                "properties": {"type": "object"},
            },
            ["type", "geometry", "properties"],
        ),
        "OgcFeatureCollection": _object(
            {
                "type": {"type": "string", "enum": ["FeatureCollection"]},
                "gridmap": ref("Provenance"),
                "numberMatched": {"type": "integer", "minimum": 0},
                "numberReturned": {"type": "integer", "minimum": 0},
                "timeStamp": {"type": "string", "format": "date-time"},
                "links": {"type": "array", "items": ref("Link")},
                "features": {"type": "array", "items": ref("OgcFeature")},
            },
            ["type", "features", "numberMatched", "numberReturned", "links"],
        ),
    }


def _object(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _feature(geometry: dict, properties: dict) -> dict:
    return _object(
        {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": STR,
            "gridmap": ref("Provenance"),
            "geometry": geometry,
            "properties": properties,
        },
        ["type", "geometry", "properties"],
    )


def query(name: str, schema: dict, description: str, *, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": STR, "description": description}


BBOX = {
    **query(
        "bbox",
        {"type": "array", "items": {**NUM, "minimum": -180, "maximum": 180}, "minItems": 4, "maxItems": 4},
        "minlon,minlat,maxlon,maxlat in WGS84 degrees; minlon > maxlon crosses the antimeridian; "
        "lat must be in [-90, 90] and minlat <= maxlat (else 400).",
    ),
    "style": "form",
    "explode": False,
}
GEOMETRY = query(
    "geometry",
    {"type": "string", "enum": ["simplified", "full", "none"], "default": "simplified"},
    "Region geometry: simplified (default), full resolution, or none.",
)
FORMAT = query(
    "format",
    {"type": "string", "enum": ["geojson", "json", "csv"]},
    "Output format; csv is also chosen by 'Accept: text/csv'.",
)
F = query("f", {"type": "string", "enum": ["json", "geojson"]}, "Output format (JSON/GeoJSON only).")
WEIGHTS = [
    query("weights", STR, "Score weights 'renewable=0.4,carbon=0.3,stress=0.2,price=0.1'; names left out count 0."),
    *[
        query(
            f"w_{n}",
            {**NUM, "minimum": 0, "maximum": 1e6},
            f"Weight of {n}; overrides that one weight (from 'weights' or the defaults).",
        )
        for n in WEIGHT_NAMES
    ],
]
SITE_QUERY = [
    query("lon", {**NUM, "minimum": -180, "maximum": 180}, "Longitude, WGS84 degrees.", required=True),
    query("lat", {**NUM, "minimum": -90, "maximum": 90}, "Latitude, WGS84 degrees.", required=True),
    query(
        "it_load_mw", {**NUM, "exclusiveMinimum": True, "minimum": 0, "maximum": 1e6}, "IT load in MW.", required=True
    ),
    # an empty pue= or load_factor= (a blank form field) means "use the default", as a blank CSV cell does
    query("pue", {**NUM, "minimum": 1, "maximum": 5}, "Power usage effectiveness; default setting default_pue.")
    | {"allowEmptyValue": True},
    query(
        "load_factor",
        {**NUM, "exclusiveMinimum": True, "minimum": 0, "maximum": 1},
        "Average / facility load; default setting default_load_factor.",
    )
    | {"allowEmptyValue": True},
    query("site_id", STR, "Site id to echo (default row-1)."),
    query("name", STR, "Site name to echo."),
]


def ok(schema_name: str, media: str = "application/json", description: str = "OK") -> dict:
    return {"description": description, "headers": _headers(), "content": {media: {"schema": ref(schema_name)}}}


def raw(media: str, schema: dict) -> dict:
    return {"description": "OK", "headers": _headers(), "content": {media: {"schema": schema}}}


def problems(*codes: int) -> dict:
    return {
        str(c): {
            "description": PROBLEM_TEXT[c],
            "headers": _headers(),
            "content": {PROBLEM: {"schema": ref("Problem")}},
        }
        for c in (*codes, 500)
    }


def _headers() -> dict:
    return {name: {"description": text, "schema": STR} for name, text in PROVENANCE_HEADERS.items()}


def op(summary: str, responses: dict, *, parameters=(), tag: str = "api", description: str = "", **extra) -> dict:
    out = {"summary": summary, "tags": [tag], "parameters": list(parameters), "responses": responses, **extra}
    return out | {"description": description} if description else out


def paths() -> dict:
    csv = {"text/csv": {"schema": STR}}
    score_ok = ok("ScoredSiteFeature", GEOJSON, "The scored site (GeoJSON Feature, or one CSV row).")
    score_ok["content"] |= csv
    many_ok = ok("ScoredCollection", GEOJSON, "Scored sites, per-region totals and row errors (or CSV).")
    many_ok["content"] |= csv
    many_ok["headers"] = _headers() | {
        "X-Gridmap-Row-Errors": {"description": "Row errors (CSV answers).", "schema": STR}
    }
    body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"type": "array", "items": ref("SiteInput")},
                        _object(
                            {
                                "sites": {"type": "array", "items": ref("SiteInput")},
                                "weights": {
                                    "type": "object",
                                    "additionalProperties": {**NUM, "minimum": 0, "maximum": 1e6},
                                },
                            },
                            ["sites"],
                        ),
                    ]
                }
            },
            GEOJSON: {
                "schema": _object(
                    {
                        "type": {"type": "string", "enum": ["FeatureCollection"]},
                        "features": {"type": "array", "items": {"type": "object"}},
                    },
                    ["type", "features"],
                )
            },
            "text/csv": {"schema": {"type": "string"}, "example": "site_id,lon,lat,it_load_mw\na,-99.78,32.5,100\n"},
        },
    }
    ogc_items = [
        query("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}, "Page size."),
        query("offset", {"type": "integer", "minimum": 0, "default": 0}, "Features to skip."),
        BBOX,
        F,
    ]
    cid = {**path_param("collectionId", "Collection id."), "schema": {"type": "string", "enum": ["regions", "sites"]}}
    return {
        "/api/v1/regions": {
            "get": op(
                "Regions with their figures",
                {"200": ok("RegionCollection", GEOJSON), **problems(400)},
                parameters=[GEOMETRY, BBOX],
            )
        },
        "/api/v1/regions/{region_id}": {
            "get": op(
                "One region",
                {"200": ok("RegionFeature", GEOJSON), **problems(400, 404)},
                parameters=[path_param("region_id", "Region id (USPS code for US states)."), GEOMETRY],
            )
        },
        "/api/v1/score": {
            "get": op(
                "Score one site", {"200": score_ok, **problems(400, 422)}, parameters=[*SITE_QUERY, *WEIGHTS, FORMAT]
            ),
            "post": op(
                "Score many sites",
                {"200": many_ok, **problems(400, 413, 415, 422)},
                parameters=[*WEIGHTS, FORMAT],
                requestBody=body,
                description="Body: a GeoJSON FeatureCollection of points, a JSON list of sites, "
                '{"sites": [...], "weights": {...}}, or CSV with a header row.',
            ),
        },
        "/api/v1/meta": {"get": op("Layer, sources, method, defaults and limits", {"200": ok("Meta"), **problems()})},
        "/api/v1/openapi.json": {
            "get": op("This document", {"200": raw(OPENAPI_MEDIA, {"type": "object"}), **problems()})
        },
        "/api/v1/docs": {"get": op("This document as an HTML page", {"200": raw("text/html", STR), **problems()})},
        "/ogc": {"get": op("OGC landing page", {"200": ok("LandingPage"), **problems(400)}, parameters=[F], tag="ogc")},
        "/ogc/conformance": {
            "get": op("Conformance classes", {"200": ok("Conformance"), **problems(400)}, parameters=[F], tag="ogc")
        },
        "/ogc/collections": {
            "get": op("Collections", {"200": ok("Collections"), **problems(400)}, parameters=[F], tag="ogc")
        },
        "/ogc/collections/{collectionId}": {
            "get": op("One collection", {"200": ok("Collection"), **problems(400, 404)}, parameters=[cid, F], tag="ogc")
        },
        "/ogc/collections/{collectionId}/items": {
            "get": op(
                "Features of a collection",
                {"200": ok("OgcFeatureCollection", GEOJSON), **problems(400, 404)},
                parameters=[cid, *ogc_items, GEOMETRY],
                tag="ogc",
            )
        },
        "/ogc/collections/{collectionId}/items/{featureId}": {
            "get": op(
                "One feature",
                {"200": ok("OgcFeature", GEOJSON), **problems(400, 404)},
                parameters=[cid, path_param("featureId", "region_id or site_id."), F, GEOMETRY],
                tag="ogc",
            )
        },
    }


def document(state) -> dict:
    """The OpenAPI 3.0 document, with the layer's name and method version in ``info``."""
    layer = state.layer
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "gridmap API",
            "version": "1.0.0",
            "description": f"Grid-impact scoring of data-center sites. Layer: {layer.name} "
            f"(data year {layer.data_year}); method {METHOD_VERSION}. Errors are "
            "application/problem+json (RFC 9457).",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": "api", "description": "JSON REST API"}, {"name": "ogc", "description": "OGC API - Features"}],
        "paths": paths(),
        "components": {"schemas": schemas()},
    }


# ---- HTML --------------------------------------------------------------------------------------


def render_html(doc: dict) -> str:
    """The document as one self-contained HTML page (escaped; no scripts)."""
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(doc['info']['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}"
        "code,pre{background:#f4f4f4}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "h3{margin-bottom:0.2em}</style></head><body>",
        f"<h1>{escape(doc['info']['title'])}</h1><p>{escape(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a>.</p><h2>Endpoints</h2>",
    ]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            parts.append(_operation_html(path, method, operation))
    parts.append(
        "<h2>Errors</h2><p>Every error is <code>application/problem+json</code> with "
        "<code>type</code>, <code>title</code>, <code>status</code>, <code>detail</code> and "
        "<code>errors: [{row, field, message}]</code>.</p><dl>"
    )
    for status, slug in TYPE_SLUGS.items():
        parts.append(
            f"<dt id='problem-{slug}'><code>{status}</code> {slug}</dt><dd>{escape(PROBLEM_TEXT[status])}</dd>"
        )
    parts.append("</dl><h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        props = schema.get("properties", {})
        rows = "".join(
            f"<tr><td><code>{escape(k)}</code></td><td>{escape(_type_text(v))}</td>"
            f"<td>{'yes' if k in schema.get('required', []) else ''}</td>"
            f"<td>{escape(v.get('description', ''))}</td></tr>"
            for k, v in props.items()
        )
        parts.append(
            f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3>"
            f"<p>{escape(schema.get('description', ''))}</p>"
            f"<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>{rows}</table>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation_html(path: str, method: str, operation: dict) -> str:
    params = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
        f"<td>{escape(_type_text(p['schema']))}</td><td>{'yes' if p.get('required') else ''}</td>"
        f"<td>{escape(p.get('description', ''))}</td></tr>"
        for p in operation.get("parameters", [])
    )
    table = (
        f"<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>meaning</th></tr>{params}</table>"
        if params
        else ""
    )
    responses = ", ".join(
        f"{escape(code)} ({escape(', '.join(r.get('content', {})) or '-')})"
        for code, r in operation["responses"].items()
    )
    body = operation.get("requestBody")
    body_text = (
        f"<p>Body: {escape(', '.join(body['content']))}. {escape(operation.get('description', ''))}</p>" if body else ""
    )
    return (
        f"<h3><code>{method.upper()} {escape(path)}</code></h3><p>{escape(operation['summary'])}</p>"
        f"{table}{body_text}<p>Responses: {responses}</p>"
    )


def _type_text(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    text = schema.get("type", "any")
    if "enum" in schema:
        text += " (" + " | ".join(map(str, schema["enum"])) + ")"
    if schema.get("type") == "array" and "items" in schema:
        text += " of " + _type_text(schema["items"])
    return text + (", nullable" if schema.get("nullable") else "")
