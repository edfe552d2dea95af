"""Security: user text is escaped where it is rendered, CSV outputs cannot run formulas, request
limits hold before parsing, and no request path reads a file outside the data and asset folders.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, square_frame
from flask import Flask

from gridmap import assets
from gridmap.app import create_app
from gridmap.cli import main
from gridmap.config import Settings
from gridmap.errors import InputError
from gridmap.outputs import FORMULA_PREFIXES

# markup that would run if a page put it into HTML unescaped, or closed a <script> data block
XSS = '"><img src=x onerror=alert(1)></script><script>alert(2)</script>'
RAW_MARKERS = ("<img src=x", "<script>alert(")
FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+SUM(1,2)", "-2+3+cmd|' /C calc'!A0", "@SUM(1)",
            "\t=1+1", "\r=1+1"]  # fmt: skip


def quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def sites_csv() -> str:
    """Sites whose every text field (id, name, an extra column and its header) is hostile."""
    rows = [f"{quoted(XSS)},xss name,-99,31,100,{quoted(XSS)}"]
    rows += [f"{quoted(f)},{quoted(f)},{-98 + i * 0.1:.1f},32,50,{quoted(f)}" for i, f in enumerate(FORMULAS)]
    rows.append('"=bad()",=bad-row,-300,32,50,x')  # a row error whose message quotes the value
    header = "site_id,name,lon,lat,it_load_mw," + quoted('=HYPERLINK("http://evil.example")')
    return header + "\n" + "\n".join(rows) + "\n"


def upload(client, text: str, filename: str = "sites.csv"):
    return client.post("/upload", data={"sites": (io.BytesIO(text.encode()), filename)},
                       content_type="multipart/form-data")  # fmt: skip


def assert_no_raw_markup(html: str) -> None:
    for marker in RAW_MARKERS:
        assert marker not in html, f"unescaped {marker!r} in the page"


# ---- escaping --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploaded(client):
    response = upload(client, sites_csv())
    assert response.status_code == 200, response.get_data(as_text=True)[-2000:]
    html = response.get_data(as_text=True)
    token = re.search(r'/upload/([\w-]{22})/csv"', html).group(1)
    return html, token


def test_upload_page_escapes_user_text_in_table_errors_and_map_data(uploaded):
    html, _ = uploaded
    assert_no_raw_markup(html)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the ranked table shows it as text
    data = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S).group(1)
    assert "<" not in data and ">" not in data  # the map's data block cannot open or close markup
    assert XSS in json.dumps(json.loads(data))  # ... and still carries the text itself for the popups
    assert "row 8, lon: lon=&#39;-300&#39;" in html


def test_home_map_escapes_a_hostile_layer_and_sample(tmp_path):
    layer = square_frame().assign(region_name=[XSS, "B<b>", "C"], region_id=["A", "B", "<i>C"])
    layer.to_file(tmp_path / "layer.geojson")
    (tmp_path / "sample.csv").write_text(
        f'site_id,name,lon,lat,it_load_mw\n"{XSS.replace(chr(34), chr(34) * 2)}",x,0.5,0.5,1\n'
    )
    settings = Settings(regions_path=tmp_path / "layer.geojson", display_regions_path=None,
                        sample_sites_path=tmp_path / "sample.csv")  # fmt: skip
    client = create_app(settings).test_client()
    for url in ("/", "/upload"):
        response = client.get(url)
        assert response.status_code == 200
        assert_no_raw_markup(response.get_data(as_text=True))
    regions = client.get("/api/v1/regions").get_json()
    assert {f["properties"]["region_name"] for f in regions["features"]} == {XSS, "B<b>", "C"}


def test_form_error_messages_escape_user_text(client):
    # the message names the columns found, so the hostile header is part of the error text
    html = upload(client, f"{quoted(XSS)},lat\n1,2\n").get_data(as_text=True)
    assert "missing required column(s)" in html
    assert_no_raw_markup(html)
    html = upload(client, "x", "<img src=x onerror=alert(1)>.xlsx").get_data(as_text=True)
    assert "unknown file type" in html and "&lt;img src=x onerror=alert(1)&gt;.xlsx" in html
    assert_no_raw_markup(html)


def test_problem_json_is_never_served_as_html(client):
    for response in (client.get("/api/v1/regions/" + XSS.replace("/", "")),
                     client.post("/api/v1/score", data=sites_csv().replace("site_id,", "site_id,site_id,"),
                                 content_type="text/csv"),
                     client.get("/ogc/collections/" + XSS.replace("/", ""))):  # fmt: skip
        assert 400 <= response.status_code < 500
        assert response.mimetype == "application/problem+json"
        assert "text/html" not in response.headers["Content-Type"]


def test_html_error_pages_escape_the_domain_message():
    # a domain error on a page route becomes werkzeug's HTML error page with the message as description
    app = create_app(Settings())

    @app.get("/hostile-page")
    def hostile_page():
        raise InputError(f"bad value {XSS}")

    response = app.test_client().get("/hostile-page")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and response.mimetype == "text/html"
    assert "bad value" in html and "&lt;img src=x" in html
    assert_no_raw_markup(html)


def test_api_docs_page_has_no_script(client):
    html = client.get("/api/v1/docs").get_data(as_text=True)
    assert "<script" not in html.lower()


# ---- CSV formula injection -------------------------------------------------------------------


def assert_no_formula_cells(text: str) -> int:
    """Every cell (header included) that starts like a formula must be a plain number; return cells checked."""
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    for cell in cells:
        if cell.startswith(FORMULA_PREFIXES):
            float(cell)  # a negative number is fine; anything else would run in a spreadsheet
    return len(cells)


def assert_neutralised(text: str) -> None:
    assert assert_no_formula_cells(text) > 10
    for formula in FORMULAS:
        assert "'" + formula in text.replace('""', '"') or "'" + formula.replace("\r", "") in text, formula
    assert '\'=hyperlink("http://evil.example")' in text.replace('""', '"')  # header cell; names are lowercased


def test_api_csv_outputs(client):
    post = client.post("/api/v1/score?format=csv", data=sites_csv(), content_type="text/csv")
    assert post.status_code == 200
    assert_neutralised(post.get_data(as_text=True))
    get = client.get("/api/v1/score", query_string={"lon": -99, "lat": 31, "it_load_mw": 1, "site_id": "=1+1",
                                                    "name": "@cmd", "format": "csv"})  # fmt: skip
    text = get.get_data(as_text=True)
    assert get.status_code == 200 and "'=1+1" in text and "'@cmd" in text
    assert_no_formula_cells(text)


def test_upload_downloads(client, uploaded):
    _, token = uploaded
    scored = client.get(f"/upload/{token}/csv").get_data(as_text=True)
    assert_neutralised(scored)
    response = client.get(f"/upload/{token}/errors")
    errors = response.get_data(as_text=True)
    response.close()
    assert "row,field,message" in errors and "-300" in errors
    assert_no_formula_cells(errors)


@pytest.mark.parametrize("engine", ["memory", "stream"])
def test_cli_csv_outputs(tmp_path, engine):
    (tmp_path / "sites.csv").write_text(sites_csv())
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["score", str(tmp_path / "sites.csv"), "-o", str(out), "-q", "--engine", engine])
    assert result.exit_code == 3, result.output
    assert_neutralised(out.read_text())
    assert_no_formula_cells((tmp_path / "out.errors.csv").read_text())


# ---- limits enforced before parsing ---------------------------------------------------------


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body built here: the test client spools a large one to a temporary file it
    never closes (a ResourceWarning in a later test)."""
    boundary = "gridmap-security-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]  # fmt: skip
    for name, (filename, data) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n\r\n'
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_oversized_form_field_is_413(client):
    # werkzeug caps form fields held in memory (500 kB) while it parses; the page says so
    body, kind = multipart({"w_renewable": "1" * 600_000}, {"sites": ("s.csv", b"lon,lat,it_load_mw\n-99,31,1\n")})
    response = client.post("/upload", data=body, content_type=kind)
    assert response.status_code == 413 and "limit" in response.get_data(as_text=True)


def test_too_many_form_parts_is_413(client):
    body, kind = multipart({f"f{i}": "x" for i in range(1500)}, {"sites": ("s.csv", b"lon,lat,it_load_mw\n-99,31,1\n")})
    response = client.post("/upload", data=body, content_type=kind)
    assert response.status_code == 413


@pytest.mark.parametrize("path", ["/api/v1/score", "/upload"])
def test_declared_length_over_the_limit_is_413_whatever_the_route(path):
    small = create_app(replace(Settings(), max_body_bytes=1000)).test_client()
    body = b"lon,lat,it_load_mw\n" + b"-99,31,1\n" * 200
    kind = "text/csv" if path.startswith("/api") else "multipart/form-data; boundary=x"
    response = small.post(path, data=body, content_type=kind)
    assert response.status_code == 413
    assert "1000" in response.get_data(as_text=True).replace(",", "")


# ---- no file outside the data and asset folders ----------------------------------------------

TRAVERSALS = [
    "/assets/leaflet/../../../../../../etc/passwd",
    "/assets/leaflet/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/assets/leaflet/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/assets/leaflet/%252e%252e/%252e%252e/etc/passwd",
    "/assets/leaflet/..%5c..%5c..%5cetc%5cpasswd",
    "/assets/leaflet/....//....//etc/passwd",
    "/assets/leaflet//etc/passwd",
    "/assets/leaflet/%2fetc%2fpasswd",
    "/assets/gridmap/../../gridmap/config.py",
    "/assets/gridmap/..%2f..%2fgridmap%2fconfig.py",
    "/assets/gridmap/%2e%2e/data/layer.json",
    "/assets/gridmap/..%2fdata%2flayer.json",
    "/assets/gridmap/gridmap.js%00.png",
    "/assets/gridmap/./../pyproject.toml",
    "/assets/%2e%2e/data/layer.json",
    "/assets/../data/layer.json",
    "/assets/..%2f..%2fetc/passwd",
    "/assets/gridmap/~/.ssh/id_rsa",
    "/assets/gridmap/proc/self/environ",
    "/assets/gridmap/%2fproc%2fself%2fenviron",
    "/upload/..%2f..%2f..%2fetc%2fpasswd/csv",
    "/upload/%2e%2e%2f%2e%2e%2fetc%2fpasswd/errors",
    "/upload/aaaaaaaaaaaaaaaaaaaaaa/..%2f..%2fetc%2fpasswd",
    "/upload/......................../csv",
    "/methodology/../../etc/passwd",
    "/data/layer.json",
    "/static/gridmap.js",
    "/gridmap/config.py",
]
SECRETS = [b"root:x:0:0", b"METHOD_VERSION", b"[build-system]", b"PRIVATE KEY", b"PATH="]


@pytest.mark.parametrize("url", TRAVERSALS)
def test_no_path_reads_outside_the_served_folders(client, url):
    response = client.get(url, follow_redirects=True)
    assert response.status_code in (400, 404), (response.status_code, response.data[:200])
    assert not any(secret in response.data for secret in SECRETS)
    response.close()


def test_the_file_serving_routes_are_the_known_ones(app: Flask):
    # any new route with a path converter can read files; it must come with its own traversal tests
    path_rules = sorted(r.rule for r in app.url_map.iter_rules() if "<path:" in r.rule)
    assert path_rules == ["/assets/<package>/<path:filename>"]
    assert app.static_folder is None


def test_served_folders_hold_no_symlinks_out():
    # send_from_directory blocks "..", not a symlink inside the folder that points elsewhere
    for package in assets.PACKAGES:
        base = assets.package_dir(package)
        for folder, dirs, files in os.walk(base):
            for name in dirs + files:
                path = Path(folder) / name
                if path.is_symlink():
                    assert path.resolve().is_relative_to(base), f"{path} points outside {base}"


def test_upload_store_only_serves_token_named_files(client, uploaded):
    _, token = uploaded
    parquet = client.get(f"/upload/{token}/parquet")
    assert parquet.status_code == 200 and parquet.data[:4] == b"PAR1"
    parquet.close()
    for fmt in ("../" + token, "parquet.bak", "errors.csv", "PARQUET"):
        assert client.get(f"/upload/{token}/{fmt}").status_code == 404
    assert client.get(f"/upload/{token[:-1]}./csv").status_code == 404


def test_sample_and_data_folders_are_not_served(client):
    for name in os.listdir(ROOT / "data"):
        for prefix in ("/", "/assets/gridmap/", "/assets/leaflet/", "/upload/"):
            assert client.get(prefix + name).status_code in (404, 405)
