"""File storage keyed by relative names (`temp/<token>/<hash>`, `processed/<token>/<name>`, `work/<job>/...`).

`Storage` is what the rest of the code uses; `LocalStorage` keeps the files in a directory (the default),
`S3Storage` (store/s3.py) in any S3-compatible store. Writes never leave a half-written file under its final
key: a local write goes to a temporary name and is renamed, an S3 object appears only when its upload
completes.

Working files live in a local scratch folder per process (`<host>-<pid>-...`), so that a restarted process
can delete what a dead one left behind without touching the folders of processes still running.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path, PurePosixPath
from typing import Protocol


class StorageKeyError(ValueError):
    pass


class StoredFileMissing(FileNotFoundError):
    """A key that should hold a file does not (deleted, expired, or a store that lost it)."""


def check_key(key: str) -> PurePosixPath:
    pure = PurePosixPath(key)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or key != pure.as_posix():
        raise StorageKeyError(f"bad storage key: {key!r}")
    return pure


class Storage(Protocol):
    def put_file(self, key: str, source: Path, *, move: bool = True) -> int:
        """Store a local file under `key` (moved, or copied when `move` is False); returns its size."""

    def copy(self, source_key: str, key: str) -> int:
        """A second stored file under `key` with the bytes of `source_key` (raises StoredFileMissing); returns its
        size. The two are independent from then on: deleting either leaves the other whole. No bytes pass through
        this process where the store can avoid it (a hard link on a local disk, a copy inside an S3 store)."""

    def local_file(self, key: str) -> AbstractContextManager[Path]:
        """The stored file as a local path for the duration of the block (raises StoredFileMissing)."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None:
        """Bytes stored under `key`, None when there is no such file."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [start, end) of a stored file, in blocks."""

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None:
        """Every file under the folder `prefix`."""

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, last-modified epoch seconds) of the files under the folder `prefix`."""

    def presigned_url(self, key: str, filename: str, seconds: int) -> str | None:
        """A time-limited URL that downloads the file straight from the store; None if the store has none."""

    def scratch_dir(self) -> Path:
        """A new private local folder for working files (removed by the caller)."""

    def sweep_dead_scratch(self) -> int:
        """Remove scratch folders of this host's processes that no longer run; returns how many."""


class Scratch:
    """Per-process scratch folders under one local root."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def _owner() -> str:
        return f"{socket.gethostname()}-{os.getpid()}-"

    def new(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=self._owner(), dir=self.root))

    def sweep_dead(self) -> int:
        if not self.root.is_dir():
            return 0
        mine = f"{socket.gethostname()}-"
        removed = 0
        for entry in self.root.iterdir():
            pid = entry.name[len(mine) :].split("-", 1)[0] if entry.name.startswith(mine) else ""
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalStorage:
    def __init__(self, root: Path, scratch_root: Path | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.scratch = Scratch(scratch_root or self.root / ".scratch")

    def path(self, key: str) -> Path:
        """The file behind a key; refuses keys that would leave the storage root."""
        return self.root.joinpath(*check_key(key).parts)

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except StorageKeyError:
            return False

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size if self.exists(key) else None
        except OSError:
            return None

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise StoredFileMissing(f"stored file {key} is missing")
        yield path

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.local_file(key) as path, open(path, "rb") as f:
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                block = f.read(1 << 20 if left is None else min(1 << 20, left))
                if not block:
                    return
                if left is not None:
                    left -= len(block)
                yield block

    def scratch_dir(self) -> Path:
        return self.scratch.new()

    def sweep_dead_scratch(self) -> int:
        """Dead processes' scratch folders, and the `.part` files of writes they did not finish."""
        removed = self.scratch.sweep_dead()
        for folder in ("temp", "processed", "public"):
            for part in (self.root / folder).rglob(".*.part") if (self.root / folder).is_dir() else ():
                pid = part.name.rsplit(".", 2)[-2]
                if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                    part.unlink(missing_ok=True)
                    removed += 1
        return removed

    def put_file(self, key: str, source: Path, *, move: bool = True) -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        if move:
            shutil.move(str(source), tmp)
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return target.stat().st_size

    def copy(self, source_key: str, key: str) -> int:
        """A hard link where the file system allows one (no second copy of the bytes; stored files are never
        written in place, so the two names can never differ), a byte copy otherwise; written as put_file writes."""
        source, target = self.path(source_key), self.path(key)
        if not source.is_file():
            raise StoredFileMissing(f"stored file {source_key} is missing")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except FileNotFoundError:
            raise StoredFileMissing(f"stored file {source_key} is missing") from None
        except OSError:  # another device, or a file system without hard links
            try:
                shutil.copyfile(source, tmp)
            except FileNotFoundError:
                tmp.unlink(missing_ok=True)
                raise StoredFileMissing(f"stored file {source_key} is missing") from None
        os.replace(tmp, target)
        return target.stat().st_size

    def delete(self, key: str) -> None:
        try:
            path = self.path(key)
        except StorageKeyError:
            return
        path.unlink(missing_ok=True)
        if len(check_key(key).parts) > 2:  # a job's own folder (`temp/<token>/...`): gone with its last file
            try:
                path.parent.rmdir()
            except OSError:  # not empty (another file of the job), or already gone
                pass

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                try:
                    yield path.relative_to(self.root).as_posix(), path.stat().st_mtime
                except OSError:
                    continue

    def presigned_url(self, key: str, filename: str, seconds: int) -> str | None:
        return None
