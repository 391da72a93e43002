"""Resumable downloads, without I/O: where the bytes go, what to ask for, and whether what arrived is whole.

A download writes `<name>.part` and renames it once its size matches the size the server announced (and
`files[].bytes` when the server gives it). A cut download is resumed with `Range: bytes=<have>-`; a server that
ignores Range answers 200 and the file starts over.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from .errors import DownloadError
from .models import OutputFile

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")
# Told (bytes on disk, whole size or None while unknown) as a download goes.
DownloadProgress = Callable[[int, "int | None"], None]


@dataclass
class Target:
    url: str
    path: Path
    expected: int | None  # the exact size, when known in advance

    @property
    def part(self) -> Path:
        return self.path.with_name(self.path.name + ".part")

    def complete(self) -> bool:
        """Already downloaded (by an earlier run): present, and of the expected size when that is known."""
        return self.path.is_file() and (self.expected is None or self.path.stat().st_size == self.expected)

    def have(self) -> int:
        return self.part.stat().st_size if self.part.is_file() else 0

    def request_headers(self) -> dict[str, str]:
        have = self.have()
        return {"Range": f"bytes={have}-"} if have else {}


def target_for(file: OutputFile | str, dest: Path) -> Target:
    """`dest` is a folder (the file keeps the server's suggested name) or the file's own path."""
    if isinstance(file, str):
        url, name, expected = file, file.rstrip("/").rsplit("/", 1)[-1], None
    else:
        url, name, expected = file.url, file.download, file.bytes
    name = Path(name).name or "download"  # a bare name: never a path the server chose
    path = dest / name if dest.is_dir() else dest
    return Target(url, path, expected)


def total_size(response: httpx.Response, have: int) -> int | None:
    """The whole file's size per this answer (Content-Range's total, or Content-Length)."""
    if response.status_code in (206, 416):
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and match.group(3) != "*":
            return int(match.group(3))
        return None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def resumes(response: httpx.Response, have: int) -> bool:
    """True when the answer continues the .part (206 from where it stops); False when it is the whole file."""
    if response.status_code != 206:
        return False
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return bool(match and match.group(1) is not None and int(match.group(1)) == have)


def finish(target: Target, total: int | None) -> bool:
    """Rename the .part when it is whole; False when it is short (resume); DownloadError when it is too long."""
    size = target.have()
    wanted = target.expected if target.expected is not None else total
    if total is not None and target.expected is not None and total != target.expected:
        raise DownloadError(f"{target.url}: the server sends {total} bytes but announced {target.expected}")
    if wanted is not None and size < wanted:
        return False
    if wanted is not None and size > wanted:
        target.part.unlink()
        raise DownloadError(f"{target.url}: got {size} bytes, expected {wanted}")
    target.part.replace(target.path)
    return True


def expected_total(files: list[OutputFile]) -> int | None:
    """The bytes of all of a job's files, when the server gave every file's exact size (`files[].bytes`)."""
    sizes = [f.bytes for f in files]
    return sum(s for s in sizes if s is not None) if sizes and None not in sizes else None


def offset(report: DownloadProgress, before: int, total: int | None) -> DownloadProgress:
    """One file's progress told as the whole job's: the bytes of the files before it added, the job's total."""
    return lambda have, _size: report(before + have, total)
