"""The application factory: state loaded once, blueprints, error handlers, provenance headers."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time

import pytest
import requests
from click.testing import CliRunner

from gridmap.app import GENERIC_500, create_app
from gridmap.cli import main
from gridmap.config import METHOD_VERSION, Settings
from gridmap.errors import RegionLayerError
from gridmap.problem import MEDIA_TYPE

HEADERS = ("X-Gridmap-Layer", "X-Gridmap-Data-Year", "X-Gridmap-Method")


@pytest.fixture(scope="module")
def squares_app(squares_path):
    app = create_app(Settings(regions_path=squares_path, display_regions_path=None, max_body_bytes=5000))

    def boom():
        raise RuntimeError("secret internal state 0xdeadbeef")

    app.add_url_rule("/api/v1/boom", "boom", boom)
    app.add_url_rule("/boom-page", "boom_page", boom)
    return app


@pytest.fixture(scope="module")
def client(squares_app):
    return squares_app.test_client()


def test_state_is_loaded_once_and_kept_on_the_app(squares_app, squares_path):
    state = squares_app.extensions["gridmap"]
    assert state.settings.regions_path == squares_path
    assert list(state.layer.frame["region_id"]) == ["A", "B", "C"]
    # the 12 real sample campuses lie outside the unit squares: scored, kept, marked outside
    assert len(state.sample.frame) == 12 and set(state.sample.frame["assignment"]) == {"outside"}
    assert squares_app.config["MAX_CONTENT_LENGTH"] == 5000


def test_all_blueprints_are_registered(squares_app):
    assert {"api", "ogc", "web", "assets"} <= set(squares_app.blueprints)
    rules = {r.rule for r in squares_app.url_map.iter_rules()}
    assert {"/api/v1/regions", "/api/v1/score", "/ogc/collections"} <= rules
    assert any(r.startswith("/assets/") for r in rules)


def test_a_broken_layer_fails_at_start(tmp_path):
    with pytest.raises(RegionLayerError, match="does not exist"):
        create_app(Settings(regions_path=tmp_path / "missing.parquet", display_regions_path=None))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/meta", 200),
        ("/api/v1/regions/ZZ", 404),
        ("/api/v1/score?lon=0.5&lat=0.5&it_load_mw=1&format=csv", 200),
        ("/ogc/collections/nope", 404),
        ("/no-such-page", 404),
        ("/api/v1/boom", 500),
    ],
)
def test_every_response_carries_provenance_headers(client, squares_app, path, status):
    response = client.get(path)
    assert response.status_code == status
    layer = squares_app.extensions["gridmap"].layer
    assert response.headers["X-Gridmap-Layer"] == layer.name == "squares"
    assert response.headers["X-Gridmap-Method"] == METHOD_VERSION
    assert all(h in response.headers for h in HEADERS)


def test_unexpected_error_is_a_generic_500_problem_and_the_traceback_is_only_logged(client, caplog):
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/boom")
    assert response.status_code == 500 and response.mimetype == MEDIA_TYPE
    body = response.get_json(force=True)
    assert body["detail"] == GENERIC_500 and body["status"] == 500
    text = response.get_data(as_text=True)
    assert "deadbeef" not in text and "Traceback" not in text
    assert "deadbeef" in caplog.text


def test_unexpected_error_on_a_page_is_html_without_traceback(client):
    response = client.get("/boom-page")
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert "deadbeef" not in response.get_data(as_text=True)


def test_http_errors_under_the_api_are_problems(client):
    response = client.delete("/api/v1/meta")
    assert response.status_code == 405 and response.mimetype == MEDIA_TYPE
    assert "GET" in response.headers["Allow"]
    assert response.get_json(force=True)["title"] == "Method Not Allowed"


def test_body_over_max_content_length_is_413_problem(client):
    response = client.post("/api/v1/score", data="x" * 6000, content_type="text/csv")
    assert response.status_code == 413 and response.mimetype == MEDIA_TYPE
    assert "5000" in response.get_json(force=True)["detail"]


def test_layer_name_with_non_ascii_is_made_header_safe(squares_app):
    from gridmap.app import _header_text

    assert _header_text("Région Île") == "R?gion ?le"


def test_scoring_core_does_not_import_flask_or_folium():
    code = (
        "import sys, gridmap.scoring, gridmap.sites, gridmap.regions, gridmap.outputs; "
        "print(sorted({'flask', 'folium'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_command_is_listed_with_host_and_port():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--host" in result.output and "--port" in result.output and "gunicorn" in result.output


@pytest.mark.server
def test_serve_command_answers_on_loopback(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gridmap.cli", "serve", "--port", str(port)], stdout=log, stderr=log
        )
        try:
            for _ in range(300):
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    response = requests.get(f"http://127.0.0.1:{port}/api/v1/meta", timeout=5)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            assert response.status_code == 200 and response.json()["data_year"] == 2023
            assert response.headers["X-Gridmap-Method"] == METHOD_VERSION
        finally:
            proc.terminate()
            proc.wait(timeout=20)
