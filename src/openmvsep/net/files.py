"""Downloaded bytes on disk: a safe name for them, and a write that never leaves a partial file.

The name comes from the remote side (a Content-Disposition header, a URL path, MEGA's attributes),
so it is stripped of directories, '..' and control characters before anything uses it.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import httpx

from openmvsep.net.errors import RemoteFetchError

FALLBACK_FILENAME = "audio"
CHUNK_BYTES = 64 * 1024

_MAX_FILENAME_CHARS = 200


@dataclass(frozen=True)
class FetchedFile:
    path: Path  # where the bytes were written (inside dest_dir)
    filename: str  # the sanitized original name, for naming outputs
    size: int


def safe_filename(name: str | None) -> str:
    """A name without directories, '..', or control characters; FALLBACK_FILENAME when nothing is left."""
    if not name:
        return FALLBACK_FILENAME
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if not unicodedata.category(char).startswith("C"))
    name = re.sub(r"\.{2,}", ".", name).strip(" .")  # no '..', no hidden or dot-only names
    if len(name) > _MAX_FILENAME_CHARS:
        stem, extension = os.path.splitext(name)
        extension = extension if len(extension) <= 16 else ""
        name = stem[: _MAX_FILENAME_CHARS - len(extension)] + extension
    return name or FALLBACK_FILENAME


_DISPOSITION_PARAM = re.compile(r';\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _content_disposition_filename(value: str) -> str | None:
    """The filename of a Content-Disposition header; RFC 6266 prefers filename* over filename."""
    params: dict[str, str] = {}
    for match in _DISPOSITION_PARAM.finditer(value):
        raw = match.group(2).strip()
        if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(match.group(1).lower(), raw)
    extended = params.get("filename*")
    if extended and extended.count("'") >= 2:
        charset, _language, encoded = extended.split("'", 2)
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    return params.get("filename")


def response_filename(response: httpx.Response, url: httpx.URL, *, use_url_path: bool) -> str:
    """The sanitized name a download announces, else (when use_url_path) the last part of its URL."""
    disposition = response.headers.get("content-disposition")
    name = _content_disposition_filename(disposition) if disposition else None
    if not name and use_url_path:
        name = url.path.rsplit("/", 1)[-1]  # httpx has already percent-decoded the path
    return safe_filename(name)


def _describe_bytes(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MB" if count >= 1024 * 1024 else f"{count} bytes"


def too_large(max_bytes: int) -> RemoteFetchError:
    return RemoteFetchError(f"the remote file is larger than the {_describe_bytes(max_bytes)} limit")


def write_chunks(
    chunks: Iterable[bytes],
    dest_dir: Path,
    filename: str,
    max_bytes: int,
    *,
    transform: Callable[[bytes], bytes] | None = None,
    expected_size: int | None = None,
) -> FetchedFile:
    """Stream chunks into a new file in dest_dir; on any failure the partial file is removed."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    extension = os.path.splitext(filename)[1]
    suffix = extension.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", extension) else ""
    descriptor, temp_name = tempfile.mkstemp(dir=dest_dir, prefix="remote-", suffix=suffix)
    path = Path(temp_name)
    size = 0
    try:
        with os.fdopen(descriptor, "wb") as output:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(max_bytes)
                output.write(transform(chunk) if transform else chunk)
        if size == 0:
            raise RemoteFetchError("the remote file is empty")
        if expected_size is not None and size != expected_size:
            raise RemoteFetchError("the download was incomplete")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FetchedFile(path=path, filename=filename, size=size)
