"""A zip written while it is sent: no temporary file, memory bounded by one read chunk.

Stored, not deflated: audio is already compressed (mp3, m4a, flac) or does not shrink much (wav), and storing
costs no CPU. zipfile writes to a stream it cannot seek with data descriptors, which every unzip tool reads.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator


class _Pipe(io.RawIOBase):
    """What zipfile writes into, drained after each write; not seekable, so zipfile streams."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:  # zipfile records offsets of what it wrote
        return self.written

    def seekable(self) -> bool:
        return False

    def drain(self) -> Iterator[bytes]:
        chunks, self.chunks = self.chunks, []
        yield from chunks


def unique_names(names: Iterable[str]) -> list[str]:
    """Names for zip members: a repeated name gets ` (2)`, ` (3)` before its extension."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            stem, dot, ext = name.rpartition(".")
            candidate = f"{stem} ({n}).{ext}" if dot else f"{name} ({n})"
        seen.add(candidate)
        out.append(candidate)
    return out


def zip_stream(members: Iterable[tuple[str, Iterable[bytes]]]) -> Iterator[bytes]:
    """(name, chunks) pairs -> the bytes of a zip holding them, in order, as they are produced."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, chunks in members:
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in chunks:
                    member.write(chunk)
                    yield from pipe.drain()
            yield from pipe.drain()
    yield from pipe.drain()
