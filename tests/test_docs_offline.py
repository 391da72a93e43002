"""`/docs` needs nothing outside this server: every asset it loads is served locally, byte-identical to the
vendored release recorded in static/MANIFEST.json."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import openmvsep.api

STATIC = Path(openmvsep.api.__file__).with_name("static")
MANIFEST = json.loads((STATIC / "MANIFEST.json").read_text("utf-8"))["files"]
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.urls


def test_docs_page_loads_only_local_assets(harness):
    r = harness.client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "://" not in r.text  # no CDN, no online validator, no absolute URL of any kind
    urls = links_of(r.text)
    assert len(urls) == 3  # script, stylesheet, icon
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = harness.client.get(url)
        assert asset.status_code == 200, url
        suffix = Path(url).suffix
        assert asset.headers["content-type"].split(";")[0] == CONTENT_TYPES[suffix], url
        entry = MANIFEST[url.removeprefix("/static/")]
        assert hashlib.sha256(asset.content).hexdigest() == entry["sha256"], url


def test_docs_page_reads_the_local_openapi_document(harness):
    html = harness.client.get("/docs").text
    spec_url = re.search(r"url: '([^']+)'", html).group(1)
    assert spec_url == "/openapi.json"
    spec = harness.client.get(spec_url)
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/api/separation/create" in paths
    assert not any(p == "/docs" or p.startswith("/static/") for p in paths)  # the page is not part of the API


def test_manifest_lists_exactly_the_shipped_files_with_their_hashes():
    shipped = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()} - {"MANIFEST.json"}
    assert shipped == set(MANIFEST)
    for path, entry in MANIFEST.items():
        assert {"registry", "package", "version", "license", "sha256"} <= set(entry), path
        assert hashlib.sha256((STATIC / path).read_bytes()).hexdigest() == entry["sha256"], path
    # Apache-2.0 asks for the licence and the NOTICE to travel with the files.
    assert {"swagger-ui/LICENSE", "swagger-ui/NOTICE"} <= set(MANIFEST)


def test_only_listed_files_are_served(harness):
    for name in ("index.html", "swagger-ui.js", "..%2FMANIFEST.json", "%2E%2E"):
        assert harness.client.get(f"/static/swagger-ui/{name}").status_code == 404, name
