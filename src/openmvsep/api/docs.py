"""`/docs`: the interactive API page, with Swagger UI served from this package instead of a CDN.

A self-hosted server often runs where the browser reaching it has no internet (a studio LAN, an offline
machine), and FastAPI's own `/docs` would then be a blank page. Swagger UI's files ship unmodified in
static/swagger-ui/, listed in static/MANIFEST.json with their package, version, licence and sha256
(scripts/vendor_npm.py refreshes them). Only files the manifest lists are served, so a request can name
nothing else on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).with_name("static")
ASSETS = "/static/swagger-ui"
FOLDER = "swagger-ui/"

# Explicit, so the answer does not depend on the host's mime.types (some map .js to application/x-javascript).
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",
}


def _listed() -> frozenset[str]:
    files = json.loads((STATIC / "MANIFEST.json").read_text("utf-8"))["files"]
    return frozenset(path.removeprefix(FOLDER) for path in files if path.startswith(FOLDER))


SERVED = _listed()

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    # Behind a proxy that mounts us under a prefix, every URL the page loads needs that prefix too.
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        # No online validator: the page must not send the API description to a third party.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(ASSETS + "/{name}")
async def swagger_ui_file(name: str) -> FileResponse:
    if name not in SERVED:
        raise HTTPException(404)
    media_type = MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream")
    return FileResponse(STATIC / FOLDER / name, media_type=media_type)
