"""File storage keyed by relative names (`temp/<hash>`, `processed/<name>`, `work/<job>/...`).

A local directory by default. Writes go to a temporary name first and are renamed into place, so a
crash never leaves a half-written file under its final key.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath


class StorageKeyError(ValueError):
    pass


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file behind a key; refuses keys that would leave the storage root."""
        pure = PurePosixPath(key)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise StorageKeyError(f"bad storage key: {key!r}")
        return self.root.joinpath(*pure.parts)

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except StorageKeyError:
            return False

    def scratch_dir(self) -> Path:
        """A private folder on the same filesystem as the store, for files that will be put()."""
        d = self.root / ".scratch"
        d.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=d))

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

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except StorageKeyError:
            pass

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)
