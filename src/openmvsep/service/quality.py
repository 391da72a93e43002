"""Quality Checker entries: datasets, submissions, the queue, leaderboards, deletion.

The API and the CLI call this; scoring itself runs in a worker (runner/quality_work.py). An upload's zip directory
is checked (names, completeness, declared sizes) before anything is written, so a refused upload leaves no row
and no file; reading the audio (layouts, headers, samples) is the worker's, which fails the entry with a message.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openmvsep.quality.datasets import Dataset, Song, load_dataset, write_mixtures_zip
from openmvsep.quality.names import ALL_METRICS
from openmvsep.quality.submission import Limits, SubmissionError, check_upload
from openmvsep.quality.synth import synthesize_dataset
from openmvsep.service import accounts
from openmvsep.service.errors import NotFound, ServiceError
from openmvsep.service.idempotency import Once
from openmvsep.service.numbers import parse_int
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.files import Storage
from openmvsep.store.models import QcDataset, QcEntry, QcScore
from openmvsep.store.status import EntryStatus

# `proc` of an entry (MVSep's legend is unpublished; ours is documented in the README). Keyed by str: rows store
# the status as a plain string, and an EntryStatus (a StrEnum) is one.
PROC: dict[str, int] = {
    EntryStatus.WAITING: 0,
    EntryStatus.SCORING: 1,
    EntryStatus.SCORED: 2,
    EntryStatus.MEASURING: 2,
    EntryStatus.DONE: 2,
    EntryStatus.FAILED: 3,
}
ON_LEADERBOARD = (EntryStatus.SCORED, EntryStatus.MEASURING, EntryStatus.DONE)
PENDING = (EntryStatus.WAITING, EntryStatus.SCORING, EntryStatus.SCORED, EntryStatus.MEASURING)
RANKING_METRICS = (*ALL_METRICS, "framewise_sdr")


@dataclass
class EntryRequest:
    algo_name: str
    main_text: str
    dataset_type: str | None
    password: str | None
    ensemble: bool


def dataset_of(row: QcDataset) -> Dataset:
    return Dataset(
        root=Path(row.root),
        name=row.name,
        slug=row.slug,
        dataset_type=row.dataset_type,
        stems=tuple(row.stems),
        sample_rate=row.sample_rate,
        songs=tuple(Song(**s) for s in row.songs),
        description=row.description,
    )


def submission_limits(settings: Settings) -> Limits:
    return Limits(
        max_members=settings.qc_max_zip_members,
        max_unpacked_bytes=settings.qc_max_unpacked_bytes,
        max_header_bytes=settings.qc_max_header_bytes,
    )


class QualityService:
    def __init__(self, db: Database, storage: Storage, settings: Settings, notify: Callable[[], None] = lambda: None):
        self.db = db
        self.storage = storage
        self.settings = settings
        self.notify = notify
        self.base: str | None = None  # where the request being answered reached this server (at())

    def at(self, base: str | None) -> QualityService:
        """This service answering a request that reached the server at `base` (checked by the caller): the links
        it builds name that address, unless a public URL is configured."""
        other = copy.copy(self)
        other.base = base
        return other

    def url(self, path: str) -> str:
        base = self.settings.public_url.rstrip("/") or self.base or self.settings.effective_public_url
        return f"{base}{path}"

    @property
    def limits(self) -> Limits:
        """What a submission zip may hold."""
        return submission_limits(self.settings)

    def claimed_entry(self, entry_id: int) -> tuple[QcEntry, Dataset] | None:
        """A claimed entry and its dataset, or None when either is gone or its zip was dropped."""
        with self.db.reader() as s:
            entry = s.get(QcEntry, entry_id)
            dataset_row = s.get(QcDataset, entry.dataset_type) if entry else None
        if entry is None or dataset_row is None or entry.zip_key is None:
            return None
        return entry, dataset_of(dataset_row)

    # ---------------------------------------------------------------- datasets

    def register_dataset(self, root: Path, *, replace: bool = False) -> QcDataset:
        """Validate a dataset folder, publish its mixtures zip, and record it (admin, CLI)."""
        dataset = load_dataset(Path(root).resolve())
        with self.db.session() as s:
            existing = s.get(QcDataset, dataset.dataset_type)
            clash = s.scalar(
                select(QcDataset).where(QcDataset.slug == dataset.slug, QcDataset.dataset_type != dataset.dataset_type)
            )
            if clash is not None:
                raise ServiceError(
                    f"Dataset slug '{dataset.slug}' is already used by dataset_type {clash.dataset_type}"
                )
            if existing is not None and not replace:
                raise ServiceError(
                    f"dataset_type {dataset.dataset_type} is already registered ({existing.name}); "
                    "use --replace to replace it"
                )
            key = f"public/{dataset.slug}.zip"
            scratch = self.storage.scratch_dir()
            try:
                self.storage.put_file(key, write_mixtures_zip(dataset, scratch / "mixtures.zip"))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            row = existing or QcDataset(created_at=utcnow())
            for column, value in dataset.to_record().items():
                setattr(row, column, value)
            row.root, row.mixtures_key = str(dataset.root), key
            s.add(row)
            s.flush()
            s.expunge(row)
            return row

    def datasets(self) -> list[dict]:
        with self.db.reader() as s:
            return [self._dataset_payload(d) for d in s.scalars(select(QcDataset).order_by(QcDataset.dataset_type))]

    def _dataset_payload(self, d: QcDataset) -> dict:
        return {
            "dataset_type": d.dataset_type,
            "name": d.name,
            "slug": d.slug,
            "description": d.description,
            "stems": d.stems,
            "sortables": d.stems,
            "sample_rate": d.sample_rate,
            "tracks": len(d.songs),
            "mixtures": self.url(f"/storage/{d.mixtures_key}"),
        }

    def _dataset(self, s: Session, value: str | None) -> QcDataset:
        dataset_type = parse_int("dataset_type", value, 0)
        row = s.get(QcDataset, dataset_type)
        if row is None:
            known = ", ".join(
                str(t) for t in s.scalars(select(QcDataset.dataset_type).order_by(QcDataset.dataset_type))
            )
            raise ServiceError(
                f"Unknown dataset_type {dataset_type}"
                + (f"; known: {known}" if known else "; no dataset is registered on this server")
            )
        return row

    # ---------------------------------------------------------------- add / delete

    def add(self, token: str | None, req: EntryRequest, zip_path: Path, once: Once | None = None) -> QcEntry:
        """A new entry. `once`: the request's idempotency key, checked and recorded in the entry's transaction."""
        algo_name = req.algo_name.strip()
        with self.db.reader() as s:
            user = accounts.require_user(s, token)
            if not algo_name:
                raise ServiceError("The algo_name field is required.")
            if len(algo_name) > 255:
                raise ServiceError("The algo_name may not be greater than 255 characters.")
            if req.password is not None and len(req.password) > 255:
                raise ServiceError("The password may not be greater than 255 characters.")
            dataset_row = self._dataset(s, req.dataset_type)
            dataset = dataset_of(dataset_row)
        try:  # the zip's directory only: the worker decodes the audio (runner/quality_work.py)
            stems = check_upload(zip_path, dataset, submission_limits(self.settings))
        except SubmissionError as e:
            raise ServiceError(str(e)) from None
        # Hashed before the transaction: argon2 inside it would hold SQLite's write lock for its whole run.
        password_hash = accounts.hash_password(req.password) if req.password else None
        now = utcnow()
        with self.db.session() as s:
            if once is not None:
                once.check(s)
            entry = QcEntry(
                dataset_type=dataset.dataset_type,
                user_id=user.id,
                algo_name=algo_name,
                main_text=req.main_text.strip(),
                ensemble=req.ensemble,
                password_hash=password_hash,
                stems=list(stems),
                status=EntryStatus.WAITING,
                msg="",
                created_at=now,
                updated_at=now,
            )
            s.add(entry)
            s.flush()
            entry.zip_key = f"qc/{entry.id}.zip"
            self.storage.put_file(entry.zip_key, zip_path)  # a rename; if the commit fails the janitor finds no row
            s.flush()
            if once is not None:
                once.record(s, entry)
            s.expunge(entry)
        self.notify()
        return entry

    def delete(self, entry_id: str | None, password: str | None) -> None:
        number = parse_int("id", entry_id, -1)
        with self.db.reader() as s:
            entry = s.get(QcEntry, number)
            if entry is None:
                raise NotFound("Entry not found")
            password_hash = entry.password_hash
        # Verified outside any transaction (argon2 would hold SQLite's write lock), then a short delete of the row
        # only if its password is still the one verified.
        if not password or not password_hash or not accounts.password_matches(password_hash, password):
            raise ServiceError("Wrong password")
        with self.db.session() as s:
            entry = s.get(QcEntry, number)
            if entry is None:
                raise NotFound("Entry not found")
            if entry.password_hash != password_hash:
                raise ServiceError("Wrong password")
            key = entry.zip_key
            s.delete(entry)
        if key:
            self.storage.delete(key)

    # ---------------------------------------------------------------- reading

    def entry(self, entry_id: str | None) -> dict:
        number = parse_int("id", entry_id, -1)
        with self.db.reader() as s:
            entry = s.get(QcEntry, number)
            if entry is None:
                raise NotFound("Entry not found")
            payload = self._entry_payload(entry, s.get(QcDataset, entry.dataset_type))
            payload["tracks"] = entry.tracks or {}
            return payload

    def queue(self, start: str | None, limit: str | None) -> list[dict]:
        first, count = self._page(start, limit, self.settings.qc_queue_page_limit)
        with self.db.reader() as s:
            rows = s.scalars(
                select(QcEntry).where(QcEntry.status.in_(PENDING)).order_by(QcEntry.id).offset(first).limit(count)
            ).all()
            names = self._datasets_by_type(s)
            return [self._entry_payload(e, names.get(e.dataset_type)) for e in rows]

    def leaderboard(
        self,
        dataset_type: str | None,
        start: str | None,
        limit: str | None,
        algo_name_filter: str | None,
        sort: str | None,
        ranking_metric: str | None,
    ) -> dict:
        first, count = self._page(start, limit, self.settings.qc_leaderboard_page_limit)
        metric = (ranking_metric or "sdr").strip().lower() or "sdr"
        if metric not in RANKING_METRICS:
            raise ServiceError(f"Unknown ranking metric '{metric}'; use one of: {', '.join(RANKING_METRICS)}")
        with self.db.reader() as s:
            dataset = self._dataset(s, dataset_type)
            key = (sort or "").strip().lower() or dataset.stems[0]
            if key not in dataset.stems:
                raise ServiceError(f"Unknown sort key '{key}'; use one of: {', '.join(dataset.stems)}")
            score = (
                select(QcScore.entry_id, QcScore.value).where(QcScore.stem == key, QcScore.metric == metric).subquery()
            )
            query = (
                select(QcEntry)
                .outerjoin(score, score.c.entry_id == QcEntry.id)
                .where(QcEntry.dataset_type == dataset.dataset_type, QcEntry.status.in_(ON_LEADERBOARD))
            )
            name_filter = (algo_name_filter or "").strip()
            if name_filter:
                escaped = name_filter.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(func.lower(QcEntry.algo_name).like(f"%{escaped}%", escape="\\"))
            rows = s.scalars(
                query.order_by(score.c.value.desc().nulls_last(), QcEntry.id).offset(first).limit(count)
            ).all()
            data = [self._entry_payload(e, dataset) for e in rows]
            for rank, row in enumerate(data, start=first + 1):
                row["rank"] = rank
            return {
                "success": True,
                "data": data,
                "dataset_type": dataset.dataset_type,
                "dataset_name": dataset.name,
                "sortables": dataset.stems,
                "sort": key,
                "ranking_metrics": metric,
            }

    def _page(self, start: str | None, limit: str | None, most: int) -> tuple[int, int]:
        first = parse_int("start", start, 0)
        count = parse_int("limit", limit, min(20, most))
        if first < 0:
            raise ServiceError("The start field must be at least 0.")
        if count < 1:
            raise ServiceError("The limit field must be at least 1.")
        return first, min(count, most)

    @staticmethod
    def _datasets_by_type(s: Session) -> dict[int, QcDataset]:
        return {d.dataset_type: d for d in s.scalars(select(QcDataset))}

    def _entry_payload(self, e: QcEntry, dataset: QcDataset | None) -> dict:
        means = e.metrics or {}
        payload: dict[str, Any] = {
            "id": e.id,
            "dataset_type": e.dataset_type,
            "date": accounts.fmt_datetime(e.created_at),
            "algo_name": e.algo_name,
            "main_text": e.main_text,
            "ensemble": int(e.ensemble),
            "proc": PROC[e.status],
            "proc_remote_date": accounts.fmt_datetime(e.scored_at),
            "msg": e.msg,
            "status": e.status,
            "metrics": means,
        }
        for stem in dataset.stems if dataset else e.stems:
            payload[f"sdr_{stem}"] = means.get(stem, {}).get("sdr")
        payload["dataset_name"] = dataset.name if dataset else None
        payload["warnings"] = e.warnings or []
        payload["link"] = self.url(f"/api/quality_checker/entry?id={e.id}")
        return payload


def ensure_default_dataset(service: QualityService) -> None:
    """A fresh install gets a small synthetic dataset (dataset_type 0), so the checker works before an admin
    registers a real one. Made once, into a temporary folder renamed into place."""
    settings = service.settings
    if settings.qc_default_dataset_tracks <= 0:
        return
    if _has_datasets(service.db):
        return
    root = settings.data_dir / "qc" / "synthetic"
    if not (root / "dataset.yaml").is_file():
        building = root.with_name(".synthetic.building")
        shutil.rmtree(building, ignore_errors=True)
        synthesize_dataset(
            building, tracks=settings.qc_default_dataset_tracks, seconds=settings.qc_default_dataset_seconds
        )
        shutil.rmtree(root, ignore_errors=True)
        building.rename(root)
    try:
        service.register_dataset(root)
    except (ServiceError, IntegrityError):
        if not _has_datasets(service.db):  # not another API process starting at the same time: a real error
            raise


def _has_datasets(db: Database) -> bool:
    with db.reader() as s:
        return bool(s.scalar(select(func.count()).select_from(QcDataset)))
