"""`/storage/...`: plain public downloads of inputs and results, with Range support."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Request
from starlette.responses import FileResponse

from openmvsep.api.context import ctx
from openmvsep.api.responses import error
from openmvsep.store.files import StorageKeyError

router = APIRouter()

PUBLIC_PREFIXES = ("temp/", "processed/", "public/")  # public/: Quality Checker mixtures
AUDIO_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "m4a": "audio/mp4", "ogg": "audio/ogg",
               "aac": "audio/aac", "opus": "audio/opus", "mp4": "video/mp4", "aiff": "audio/aiff", "aif": "audio/aiff"}


def content_type(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return AUDIO_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


@router.get("/storage/{key:path}")
def download(request: Request, key: str):
    storage = ctx(request).storage
    if not key.startswith(PUBLIC_PREFIXES) or key.count("/") != 1:
        return error("File not found", 404)
    try:
        path = storage.path(key)
    except StorageKeyError:
        return error("File not found", 404)
    if not path.is_file():
        return error("File not found", 404)
    # FileResponse answers Range requests with 206 and sends Content-Length and Accept-Ranges.
    return FileResponse(path, media_type=content_type(key.rsplit("/", 1)[-1]), filename=None)
