"""The weights registry: which checkpoint (and config) is known by which labels, and the local cache.

`serves` labels are opaque to the engine: it matches them as strings (`serving`, and `select` by the part before
a colon). The algorithms layer names its catalog options with them ("SEP_TYPE:KEY"); the engine never reads
a sep_type out of one.

Entries come from the registry shipped with openmvsep (`registry.yaml` beside this file) and from an
admin's own file (`<data dir>/models.yaml`, same layout; its entries win by name). An entry:

    - name: bs_roformer_viperx_1297            # what `openmvsep models` calls it
      serves: ["40:4"]                          # labels: the catalog options (sep_type:add_opt1 key) it runs
      model_type: bs_roformer
      config: configs/model_bs_roformer_ep_317_sdr_12.9755.yaml   # relative to the registry file, or absolute
      urls: [https://…/model_bs_roformer_ep_317_sdr_12.9755.ckpt]
      filename: model_bs_roformer_ep_317_sdr_12.9755.ckpt
      sha256: 5b84…                             # required before a pickled file is ever loaded
      size: 639…                                # optional, checked when given
      rank: 10                                  # optional (default 0): among the options of one catalog field,
                                                # the higher rank is preferred (the default and the substitute)
      sdr: 12.97                                # optional: the published SDR, which breaks ties of rank
      substitute: true                          # optional: a public model standing in for a private one it does
                                                # not reproduce (reports label what it serves as a substitute)

A sep_type without options is served by the label `SEP_TYPE:` (what `Choice.option()` gives for it). A demucs bag
is an entry of `model_type: demucs_bag` whose `config` is demucs' bag YAML (`models:` signatures, `weights:`,
`segment:`) and whose `members` maps each signature to the registry entry holding that model's file: the bag has
no file of its own, is present when all its members are, and selecting it (`models download NAME`) selects them.

Downloads resume from a `.part` file with an HTTP Range request, are checked against size and sha256, and
only then renamed into place, so the cache never holds a half or wrong file under its real name.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

BUILTIN_REGISTRY = Path(__file__).with_name("registry.yaml")
DEMUCS_BAG = "demucs_bag"  # model_type of a bag of demucs models (weights per model and source)


class WeightsError(Exception):
    """Weights that are unknown, missing or wrong; the message says what to run."""


@dataclass(frozen=True)
class WeightEntry:
    name: str
    model_type: str
    config: Path
    urls: tuple[str, ...]
    filename: str
    sha256: str | None = None
    size: int | None = None
    serves: tuple[str, ...] = ()
    description: str = ""
    rank: int = 0
    sdr: float | None = None
    substitute: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def licence_of(entry: WeightEntry) -> str:
    """The licence an entry states (registry files spell it either way), for `models list` and the admin page."""
    return str(entry.extra.get("licence") or entry.extra.get("license") or "not stated")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entries_from(path: Path) -> list[WeightEntry]:
    data = yaml.safe_load(path.read_text()) or []
    if isinstance(data, dict):
        data = data.get("models") or []
    entries = []
    for raw in data:
        if raw.get("sha256") is not None and not isinstance(raw.get("sha256"), str):
            # YAML reads an unquoted all-digit (or digits-e-digits) hash as a number: refuse rather than guess.
            raise WeightsError(f"{path}: the sha256 of {raw.get('name')!r} must be a quoted string")
        try:
            config = Path(raw.get("config") or "")  # demucs packages carry their own architecture
            if raw.get("config") and not config.is_absolute():
                config = path.parent / config
            urls = raw.get("urls") or ([raw["url"]] if raw.get("url") else [])
            entries.append(
                WeightEntry(
                    name=str(raw["name"]),
                    model_type=str(raw["model_type"]),
                    config=config,
                    urls=tuple(urls),
                    filename=str(raw.get("filename") or (urls[0].rsplit("/", 1)[-1] if urls else raw["name"])),
                    sha256=(str(raw["sha256"]).lower() if raw.get("sha256") else None),
                    size=int(raw["size"]) if raw.get("size") else None,
                    serves=tuple(str(s) for s in raw.get("serves") or ()),
                    description=str(raw.get("description") or ""),
                    rank=int(raw.get("rank") or 0),
                    sdr=float(raw["sdr"]) if raw.get("sdr") is not None else None,
                    substitute=bool(raw.get("substitute", False)),
                    extra={k: v for k, v in raw.items() if k not in WeightEntry.__dataclass_fields__},
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"{path}: a registry entry is malformed ({type(e).__name__}: {e}): {raw!r}") from None
    return entries


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class WeightsRegistry:
    """The entries of the registry files, and the weights directory they point into.

    A running server sees `openmvsep models download` without a restart: whether a file is present is a stat
    at each question, and `stamp()` changes whenever the weights directory or a registry file changes (a download
    renames its file into place, which touches the directory), so that callers caching an answer know when to ask
    again. `refresh()` re-reads the registry files when they changed (`--pin` writes models.yaml), at most every
    `recheck_seconds`. Each process checks its own disk: a worker on another machine sees its own weights.
    """

    def __init__(self, weights_dir: Path, extra_files: Iterable[Path] = (), *, recheck_seconds: float = 2.0):
        self.weights_dir = Path(weights_dir)
        self.recheck_seconds = recheck_seconds
        self._sources = tuple(Path(p) for p in (BUILTIN_REGISTRY, *extra_files))
        self._sources_stamp = self._stamp_of(self._sources)
        self._checked_at = time.monotonic()
        self.entries: dict[str, WeightEntry] = self._read()

    def _read(self) -> dict[str, WeightEntry]:
        entries: dict[str, WeightEntry] = {}
        for path in self._sources:
            if path.is_file():
                for entry in _entries_from(path):
                    entries[entry.name] = entry
        return entries

    @staticmethod
    def _stamp_of(paths: Iterable[Path]) -> tuple[int | None, ...]:
        return tuple(_mtime(p) for p in paths)

    def stamp(self) -> tuple[int | None, ...]:
        """Changes when the weights directory or a registry file does (a few stats)."""
        return (_mtime(self.weights_dir), *self._stamp_of(self._sources))

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the registry files if they changed since the last look (at most every recheck_seconds, unless
        `force`)."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.recheck_seconds:
            return
        self._checked_at = now
        stamp = self._stamp_of(self._sources)
        if stamp != self._sources_stamp:
            try:
                entries = self._read()
            except WeightsError:  # a half-written or broken models.yaml: keep serving what was read before
                return
            self.entries, self._sources_stamp = entries, stamp

    @classmethod
    def for_data_dir(cls, data_dir: Path, *, recheck_seconds: float = 2.0) -> WeightsRegistry:
        return cls(Path(data_dir) / "weights", [Path(data_dir) / "models.yaml"], recheck_seconds=recheck_seconds)

    def get(self, name: str) -> WeightEntry:
        entry = self.entries.get(name)
        if entry is None:
            raise WeightsError(f"no weights named {name!r}; `openmvsep models list` shows them")
        return entry

    def serving(self, option: str) -> WeightEntry | None:
        """The entry serving a catalog option such as '40:4'; an admin's entries come before the shipped ones."""
        return next((e for e in reversed(list(self.entries.values())) if option in e.serves), None)

    def select(self, selector: str | None) -> list[WeightEntry]:
        """Entries by name, 'SEP_TYPE' or 'SEP_TYPE:OPTION'; all when no selector. A selected bag brings its
        members along (after it), so downloading a bag downloads the files it is made of."""
        if not selector:
            return list(self.entries.values())
        if selector in self.entries:
            hits = [self.entries[selector]]
        else:
            hits = [
                e
                for e in self.entries.values()
                if selector in e.serves or any(s.split(":")[0] == selector for s in e.serves)
            ]
        if not hits:
            raise WeightsError(f"nothing in the registry matches {selector!r}")
        out: list[WeightEntry] = []
        for entry in hits:
            for e in (entry, *self.members(entry).values()):
                if e not in out:
                    out.append(e)
        return out

    def members(self, entry: WeightEntry) -> dict[str, WeightEntry]:
        """A bag's members by their signature in the bag YAML; {} for a single model."""
        if entry.model_type != DEMUCS_BAG:
            return {}
        raw = entry.extra.get("members")
        if not isinstance(raw, dict) or not raw:
            raise WeightsError(f"the bag {entry.name} needs `members`: a mapping of signature -> registry entry")
        return {str(signature): self.get(str(name)) for signature, name in raw.items()}

    def downloadable(self, entry: WeightEntry) -> bool:
        """Whether `download` can fetch it (a bag: every member)."""
        members = self.members(entry)
        return all(m.urls for m in members.values()) if members else bool(entry.urls)

    def path(self, entry: WeightEntry) -> Path:
        return self.weights_dir / entry.filename

    def is_present(self, entry: WeightEntry) -> bool:
        if entry.model_type == DEMUCS_BAG:
            try:
                return all(self.is_present(m) for m in self.members(entry).values())
            except WeightsError:  # a bag naming an unknown member never runs; loading it says why
                return False
        return self.path(entry).is_file()

    def require(self, entry: WeightEntry) -> Path:
        """The local file, or an error that names the file and the command that fetches it."""
        path = self.path(entry)
        if not path.is_file():
            raise WeightsError(
                f"the weights {entry.filename} ({entry.name}) are not in {self.weights_dir}; "
                f"run `openmvsep models download {entry.name}`"
            )
        return path

    def verify(self, entry: WeightEntry) -> str:
        """Check a present file against its pin; returns its sha256."""
        path = self.require(entry)
        if entry.size and path.stat().st_size != entry.size:
            raise WeightsError(f"{entry.filename} has {path.stat().st_size} bytes, expected {entry.size}")
        actual = sha256_file(path)
        if entry.sha256 and actual != entry.sha256:
            raise WeightsError(
                f"{entry.filename} does not match its sha256 (expected {entry.sha256}, got {actual}); "
                f"delete it and run `openmvsep models download {entry.name}`"
            )
        return actual

    def download(
        self, entry: WeightEntry, *, progress: Callable[[int, int | None], None] | None = None, timeout: float = 60.0
    ) -> Path:
        """Fetch (resuming a partial download) and verify; returns the final path (a bag: its members', and its
        config's path)."""
        members = self.members(entry)
        if members:
            for member in members.values():
                self.download(member, progress=progress, timeout=timeout)
            return entry.config
        target = self.path(entry)
        if target.is_file():
            self.verify(entry)
            return target
        if not entry.urls:
            raise WeightsError(f"{entry.name} has no download URL; put {entry.filename} into {self.weights_dir}")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        errors = []
        for url in entry.urls:
            try:
                self._fetch(url, part, entry, progress, timeout)
                break
            except (httpx.HTTPError, WeightsError) as e:
                errors.append(f"{url}: {e}")
        else:
            raise WeightsError(f"could not download {entry.filename}: " + "; ".join(errors))
        digest = sha256_file(part)
        if entry.sha256 and digest != entry.sha256:
            part.unlink(missing_ok=True)
            raise WeightsError(
                f"the download of {entry.filename} does not match its sha256 "
                f"(expected {entry.sha256}, got {digest}); it was removed"
            )
        if entry.size and part.stat().st_size != entry.size:
            part.unlink(missing_ok=True)
            raise WeightsError(f"the download of {entry.filename} has the wrong size; it was removed")
        part.replace(target)
        return target

    @staticmethod
    def _fetch(url: str, part: Path, entry: WeightEntry, progress, timeout: float) -> None:
        have = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as r:
            if r.status_code == 416 and have:  # the part file is already complete
                return
            r.raise_for_status()
            if have and r.status_code != 206:  # the server ignored the Range: start over
                have = 0
            total = r.headers.get("content-length")
            total_size = int(total) + have if total and total.isdigit() else entry.size
            with open(part, "ab" if have else "wb") as out:
                done = have
                for chunk in r.iter_bytes():  # as it arrives: a dropped connection keeps what came
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total_size)


def pin_entry(models_file: Path, entry: WeightEntry, path: Path) -> str:
    """Write `entry` with the sha256 of the file at `path` into an admin registry file; returns the hash."""
    digest = sha256_file(path)
    data = yaml.safe_load(models_file.read_text()) if models_file.is_file() else None
    data = data or []
    data = [raw for raw in data if raw.get("name") != entry.name]
    data.append(
        {
            "name": entry.name,
            "description": entry.description,
            "serves": list(entry.serves),
            "model_type": entry.model_type,
            "config": str(entry.config),
            "urls": list(entry.urls),
            "filename": entry.filename,
            "sha256": digest,
            **({"rank": entry.rank} if entry.rank else {}),
            **({"sdr": entry.sdr} if entry.sdr is not None else {}),
            **({"substitute": True} if entry.substitute else {}),
            **entry.extra,
        }
    )
    models_file.parent.mkdir(parents=True, exist_ok=True)
    models_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return digest
