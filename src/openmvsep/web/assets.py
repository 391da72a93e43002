"""The page's scripts and styles, served from this package: no CDN, and the page works with no network.

Two kinds of files live in static/: our own (static/app/) and vendored releases (static/vendor/, copied unmodified
from npm by scripts/vendor_npm.py --web and listed in static/vendor/MANIFEST.json with package, version, licence
and sha256). Only the files found here at start-up are served, so a request can name nothing else on disk. Each URL
carries a version (a prefix of the file's sha256), so browsers may cache a file for good and still see a new one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

STATIC = Path(__file__).with_name("static")
VENDOR_MANIFEST = STATIC / "vendor" / "MANIFEST.json"
PREFIX = "/web/static/"

# Explicit, so the answer does not depend on the host's mime.types (some map .js to application/x-javascript).
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    "": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class Asset:
    path: Path
    version: str


def _scan() -> dict[str, Asset]:
    listed = json.loads(VENDOR_MANIFEST.read_text("utf-8"))["files"]
    assets = {f"vendor/{name}": Asset(STATIC / "vendor" / name, entry["sha256"][:12]) for name, entry in listed.items()}
    for path in sorted((STATIC / "app").rglob("*")):
        if path.is_file():
            assets[path.relative_to(STATIC).as_posix()] = Asset(
                path, hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            )
    return assets


SERVED = _scan()


def url(name: str) -> str:
    """`asset('app/upload.js')` in templates: the versioned URL of a served file."""
    return f"{PREFIX}{name}?v={SERVED[name].version}"


def serve(request: Request) -> Response:
    name = request.path_params["name"]
    asset = SERVED.get(name)
    if asset is None:
        return Response("Not found", 404, media_type="text/plain")
    current = request.query_params.get("v") == asset.version
    return FileResponse(
        asset.path,
        media_type=MEDIA_TYPES.get(asset.path.suffix, "application/octet-stream"),
        headers={
            "Cache-Control": "public, max-age=31536000, immutable" if current else "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )
