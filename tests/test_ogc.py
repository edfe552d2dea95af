"""OGC API - Features under /ogc: landing page, conformance, collections, items, paging, bbox."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from gridmap.app import create_app
from gridmap.config import Settings
from gridmap.problem import MEDIA_TYPE


@pytest.fixture(scope="module")
def client():
    return create_app(Settings()).test_client()


def get_json(client, url, status=200):
    parts = urlsplit(url)
    response = client.get(parts.path + ("?" + parts.query if parts.query else ""))
    assert response.status_code == status, response.get_data(as_text=True)
    return response, json.loads(response.get_data())


def rels(doc) -> dict:
    return {link["rel"]: link for link in doc["links"]}


def test_landing_page_links(client):
    for path in ("/ogc", "/ogc/"):
        _, doc = get_json(client, path)
        links = rels(doc)
        assert {"self", "service-desc", "service-doc", "conformance", "data"} <= set(links)
        assert links["service-desc"]["type"].startswith("application/vnd.oai.openapi+json")
        assert links["data"]["href"].endswith("/ogc/collections")


def test_conformance_declares_core_and_geojson(client):
    _, doc = get_json(client, "/ogc/conformance")
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in doc["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in doc["conformsTo"]


def test_collections_regions_and_sites(client):
    _, doc = get_json(client, "/ogc/collections")
    by_id = {c["id"]: c for c in doc["collections"]}
    assert set(by_id) == {"regions", "sites"}
    items = rels(by_id["regions"])["items"]
    assert items["type"] == "application/geo+json" and items["href"].endswith("/ogc/collections/regions/items")
    west, south, east, north = by_id["sites"]["extent"]["spatial"]["bbox"][0]
    assert -125 < west < east < -70 and 25 < south < north < 50
    _, one = get_json(client, "/ogc/collections/sites")
    assert one["id"] == "sites"


def test_items_paging_with_next_and_prev_covers_every_region_once(client):
    url, seen, pages = "/ogc/collections/regions/items?limit=20&geometry=none", [], 0
    while url:
        response, doc = get_json(client, url)
        assert response.mimetype == "application/geo+json"
        assert doc["numberMatched"] == 51 and doc["numberReturned"] == len(doc["features"]) <= 20
        assert doc["gridmap"]["data_year"] == 2023
        seen += [f["id"] for f in doc["features"]]
        links = rels(doc)
        assert ("prev" in links) == (pages > 0)
        url = links.get("next", {}).get("href")
        if url:
            assert "geometry=none" in url and "offset=" in url
        pages += 1
    assert pages == 3 and len(seen) == len(set(seen)) == 51


def test_items_bbox_and_sites_collection(client):
    _, doc = get_json(client, "/ogc/collections/regions/items?bbox=-100,30,-99,31&geometry=none")
    assert [f["id"] for f in doc["features"]] == ["TX"] and doc["numberMatched"] == 1
    _, sites = get_json(client, "/ogc/collections/sites/items?bbox=-100,30,-96,33")
    assert {f["id"] for f in sites["features"]} == {"stargate_abilene", "stargate_milam"}
    assert all(f["properties"]["region_id"] == "TX" and f["geometry"]["type"] == "Point" for f in sites["features"])
    assert sites["gridmap"]["weights"]["renewable"] == 0.3


def test_single_items(client):
    response, doc = get_json(client, "/ogc/collections/sites/items/meta_hyperion")
    assert response.mimetype == "application/geo+json"
    assert doc["id"] == "meta_hyperion" and doc["properties"]["region_id"] == "LA"
    assert rels(doc)["collection"]["href"].endswith("/ogc/collections/sites")
    _, region = get_json(client, "/ogc/collections/regions/items/WA")
    assert region["properties"]["region_name"] == "Washington" and region["geometry"]["type"] == "MultiPolygon"


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/ogc/collections/rivers", 404, "rivers"),
        ("/ogc/collections/rivers/items", 404, "rivers"),
        ("/ogc/collections/regions/items/XX", 404, "XX"),
        ("/ogc/collections/regions/items?limit=0", 400, "limit"),
        ("/ogc/collections/regions/items?limit=ten", 400, "limit"),
        ("/ogc/collections/regions/items?offset=-1", 400, "offset"),
        ("/ogc/collections/regions/items?bbox=1,2", 400, "bbox"),
        ("/ogc/collections?f=html", 400, "f="),
        ("/ogc/collections/sites/items?geometry=round", 400, "geometry"),
        ("/ogc/collections/sites/items/meta_hyperion?geometry=round", 400, "geometry"),
    ],
)
def test_ogc_errors_are_problems(client, url, status, words):
    response, body = get_json(client, url, status)
    assert response.mimetype == MEDIA_TYPE and words in body["detail"]


def test_offset_past_the_end_is_an_empty_page(client):
    _, doc = get_json(client, "/ogc/collections/sites/items?offset=100")
    assert doc["features"] == [] and doc["numberMatched"] == 12 and doc["numberReturned"] == 0
    assert "next" not in rels(doc) and "prev" in rels(doc)
