"""`/storage/...`: plain public downloads of inputs and results, with Range support.

A local store is served from its files; an S3 store is streamed through (or, with presigned URLs on,
redirected to the store itself).
"""

from __future__ import annotations

import mimetypes
import re

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, RedirectResponse, StreamingResponse

from openmvsep.api.context import ctx
from openmvsep.api.responses import error
from openmvsep.engine.documents import DOCUMENT_KINDS
from openmvsep.service.naming import STORAGE_TOKEN
from openmvsep.store.files import LocalStorage, StorageKeyError

router = APIRouter()

FLAT_FOLDERS = ("temp", "processed", "public")  # public/: Quality Checker mixtures; temp, processed: older rows
TOKEN_FOLDERS = ("temp", "processed")  # <folder>/<random token>/<name>: inputs and results since tokens
AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "opus": "audio/opus",
    "mp4": "video/mp4",
    "aiff": "audio/aiff",
    "aif": "audio/aiff",
}
# Results that are not audio (MIDI, text, subtitles, segments): the types their documents declare.
DOCUMENT_TYPES = {kind.extension: kind.content_type for kind in DOCUMENT_KINDS.values()}
RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def content_type(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return (
        AUDIO_TYPES.get(ext) or DOCUMENT_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    )


def servable(key: str) -> bool:
    """A key of a file clients may download: `<folder>/<name>` or `<folder>/<token>/<name>`."""
    parts = key.split("/")
    if not all(parts):
        return False
    if len(parts) == 2:
        return parts[0] in FLAT_FOLDERS
    return len(parts) == 3 and parts[0] in TOKEN_FOLDERS and STORAGE_TOKEN.fullmatch(parts[1]) is not None


@router.get("/storage/{key:path}")
def download(request: Request, key: str):
    c = ctx(request)
    storage = c.storage
    if not servable(key):
        return error("File not found", 404)
    name = key.rsplit("/", 1)[-1]
    try:
        if isinstance(storage, LocalStorage):
            path = storage.path(key)
            try:
                found = path.is_file()
            except OSError:  # a name no file can have (too long for the file system): there is no such file
                found = False
            if not found:
                return error("File not found", 404)
            # FileResponse answers Range requests with 206 and sends Content-Length and Accept-Ranges.
            return FileResponse(path, media_type=content_type(name), filename=None)
        size = storage.size(key)
    except StorageKeyError:
        return error("File not found", 404)
    if size is None:
        return error("File not found", 404)
    if c.settings.presigned_urls:
        url = storage.presigned_url(key, name, c.settings.presigned_url_seconds)
        if url:
            return RedirectResponse(url, status_code=307)
    return _stream(storage, key, size, content_type(name), request.headers.get("range"))


def _stream(storage, key: str, size: int, media_type: str, range_header: str | None):
    headers = {"Accept-Ranges": "bytes"}
    match = RANGE.match(range_header.strip()) if range_header else None
    if match is None or not any(match.groups()):
        headers["Content-Length"] = str(size)
        return StreamingResponse(storage.read(key), media_type=media_type, headers=headers)
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last) + 1, size) if last else size
    else:  # "-N": the last N bytes
        start, end = max(size - int(last), 0), size
    if start >= size or start >= end:
        return error("Range not satisfiable", 416)
    headers.update({"Content-Range": f"bytes {start}-{end - 1}/{size}", "Content-Length": str(end - start)})
    return StreamingResponse(storage.read(key, start, end), status_code=206, media_type=media_type, headers=headers)
