"""A Quality Checker dataset on disk: its manifest, its validation and the public mixtures zip.

A dataset is a folder holding `dataset.yaml` and one sub-folder per song, each with
`mixture.<wav|flac>` and one `<stem>.<wav|flac>` per scored stem. The references never leave the
server: only the mixtures are zipped for download, named `<song>_mixture.<ext>` as on MVSep.

Validation reads audio headers only, so checking a 100-song dataset is quick.
"""

from __future__ import annotations

import os
import re
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import soundfile
import yaml

MANIFEST = "dataset.yaml"
AUDIO_EXTENSIONS = (".wav", ".flac")
MIXTURE = "mixture"

SONG_NAME = re.compile(r"[A-Za-z0-9_.\- ]+")
STEM_NAME = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")  # lower-case file suffixes such as back-instrum
SLUG = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
MAX_LISTED_PROBLEMS = 20


class DatasetError(Exception):
    """A dataset that cannot be used; the message names the file and what is wrong, for an admin."""


@dataclass(frozen=True)
class Song:
    name: str
    frames: int
    channels: int


@dataclass(frozen=True)
class Dataset:
    root: Path
    name: str
    slug: str
    dataset_type: int
    stems: tuple[str, ...]
    sample_rate: int
    songs: tuple[Song, ...]
    description: str = ""

    def mixture_path(self, song: str) -> Path:
        return self._audio_path(song, MIXTURE)

    def reference_path(self, song: str, stem: str) -> Path:
        if stem not in self.stems:
            raise DatasetError(f"{self.root}: dataset {self.name!r} has no stem {stem!r}")
        return self._audio_path(song, stem)

    def to_record(self) -> dict[str, Any]:
        """A JSON-able summary for the database: everything but the folder."""
        return {
            "name": self.name,
            "slug": self.slug,
            "dataset_type": self.dataset_type,
            "stems": list(self.stems),
            "sample_rate": self.sample_rate,
            "description": self.description,
            "songs": [{"name": s.name, "frames": s.frames, "channels": s.channels} for s in self.songs],
        }

    def _audio_path(self, song: str, stem: str) -> Path:
        if song not in {s.name for s in self.songs}:
            raise DatasetError(f"{self.root}: dataset {self.name!r} has no song {song!r}")
        path = _find_audio(self.root / song, stem)
        if path is None:
            raise DatasetError(f"{self.root / song}: {stem}.wav (or .flac) is missing")
        return path


def load_dataset(root: Path) -> Dataset:
    """Read `root`'s manifest and check every song's files; raise DatasetError listing what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    manifest = _read_manifest(root / MANIFEST)

    song_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not song_dirs:
        raise DatasetError(f"{root}: no songs (expected one sub-folder per song)")
    songs: list[Song] = []
    problems: list[str] = []
    for song_dir in song_dirs:
        try:
            songs.append(_check_song(song_dir, manifest["stems"], manifest["sample_rate"]))
        except DatasetError as e:
            problems.append(str(e))
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        if len(problems) > len(listed):
            listed.append(f"... and {len(problems) - len(listed)} more")
        header = f"{root}: {len(problems)} of {len(song_dirs)} songs have problems:\n" if len(problems) > 1 else ""
        raise DatasetError(header + "\n".join(listed))
    return Dataset(root=root, songs=tuple(songs), **manifest)


def write_mixtures_zip(dataset: Dataset, dest: Path) -> Path:
    """Zip every song's mixture as `<song>_mixture.<ext>` into `dest` (atomically); return `dest`.

    Stored, not deflated: audio barely compresses and storing keeps the zip fast to build.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")  # same folder, so the rename is atomic
    try:
        with zipfile.ZipFile(temp, "x", compression=zipfile.ZIP_STORED) as archive:
            for song in dataset.songs:
                path = dataset.mixture_path(song.name)
                archive.write(path, f"{song.name}_{MIXTURE}{path.suffix.lower()}")
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return dest


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest's fields as Dataset keyword arguments (unknown keys ignored)."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing (every dataset folder needs a {MANIFEST} manifest)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with name, dataset_type, stems and sample_rate")

    def problem(key: str, expected: str) -> DatasetError:
        found = f"{data[key]!r}" if key in data else "nothing"
        return DatasetError(f"{path}: {key} must be {expected}, found {found}")

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise problem("name", "a non-empty string")
    dataset_type = data.get("dataset_type")
    if not _is_int(dataset_type) or dataset_type < 0:
        raise problem("dataset_type", "an integer >= 0")
    sample_rate = data.get("sample_rate")
    if not _is_int(sample_rate) or sample_rate <= 0:
        raise problem("sample_rate", "a positive integer (Hz)")
    stems = data.get("stems")
    if not (isinstance(stems, list) and stems and all(isinstance(s, str) and STEM_NAME.fullmatch(s) for s in stems)):
        raise problem("stems", "a non-empty list of lower-case stem suffixes such as [vocals, instrum]")
    if len(set(stems)) != len(stems) or MIXTURE in stems:
        raise problem("stems", f"distinct suffixes other than {MIXTURE!r}")
    if "slug" in data:
        slug = data["slug"]
        if not isinstance(slug, str) or not SLUG.fullmatch(slug):
            raise problem("slug", "lower-case letters and digits joined by single underscores")
    else:
        slug = _default_slug(name)
        if not slug:
            raise DatasetError(f"{path}: name {name!r} has no ASCII letters or digits to make a slug from; add a slug")
    description = data.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise problem("description", "a string")
    return {
        "name": name.strip(),
        "slug": slug,
        "dataset_type": dataset_type,
        "stems": tuple(stems),
        "sample_rate": sample_rate,
        "description": description,
    }


def _default_slug(name: str) -> str:
    """The name lower-cased, each run of other characters than ASCII letters and digits made one `_`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)  # YAML `true` is a bool, and bool is an int


# --------------------------------------------------------------------------------------------
# Songs
# --------------------------------------------------------------------------------------------


def _check_song(song_dir: Path, stems: tuple[str, ...], sample_rate: int) -> Song:
    """The song in `song_dir` after checking its name and files; DatasetError names the first problem."""
    name = song_dir.name
    if name.startswith(".") or not SONG_NAME.fullmatch(name):
        raise DatasetError(
            f"{song_dir}: unsafe song folder name {name!r} "
            "(use letters, digits, spaces, '_', '-' and '.', not a leading '.')"
        )
    mixture = _audio_info(song_dir, MIXTURE, sample_rate)
    if mixture.frames == 0:
        raise DatasetError(f"{song_dir / mixture.name}: no audio frames")
    for stem in stems:
        info = _audio_info(song_dir, stem, sample_rate)
        if info.frames != mixture.frames:
            raise DatasetError(f"{song_dir / info.name}: {info.frames} frames, but the mixture has {mixture.frames}")
        if info.channels != mixture.channels:
            raise DatasetError(
                f"{song_dir / info.name}: {info.channels} channels, but the mixture has {mixture.channels}"
            )
    return Song(name=name, frames=mixture.frames, channels=mixture.channels)


@dataclass(frozen=True)
class _FileInfo:
    name: str  # file name inside the song folder
    frames: int
    channels: int


def _audio_info(song_dir: Path, stem: str, sample_rate: int) -> _FileInfo:
    path = _find_audio(song_dir, stem)
    if path is None:
        raise DatasetError(f"{song_dir}: {stem}.wav (or .flac) is missing")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError) as e:  # soundfile's LibsndfileError is a RuntimeError
        raise DatasetError(f"{path}: not readable audio ({e})") from None
    if info.samplerate != sample_rate:
        raise DatasetError(f"{path}: sample rate {info.samplerate} Hz, but {MANIFEST} says {sample_rate} Hz")
    return _FileInfo(name=path.name, frames=info.frames, channels=info.channels)


def _find_audio(song_dir: Path, stem: str) -> Path | None:
    """`<stem>.wav` or `<stem>.flac` in `song_dir`; DatasetError if both are there (which one is scored?)."""
    found = [song_dir / f"{stem}{ext}" for ext in AUDIO_EXTENSIONS if (song_dir / f"{stem}{ext}").is_file()]
    if len(found) > 1:
        raise DatasetError(f"{song_dir}: both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None
