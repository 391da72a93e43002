"""Separation jobs: create, status, cancel, delete, history, queue and demo views.

Creating a job checks everything first (token, algorithm, options, audio, limits, credits) and only then
writes: the input goes into storage and the job, its work items and its ledger row go into the database in
one transaction. Any refusal leaves no row and no file behind.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import floor
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import quote, urlsplit

from sqlalchemy import and_, bindparam, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from openmvsep.engine import audio
from openmvsep.engine.joins import plan_chunks
from openmvsep.engine.recipes import RECIPES, Recipe
from openmvsep.engine.weights import WeightsRegistry
from openmvsep.service import accounts
from openmvsep.service.catalog import Algorithm, Catalog, OptionError
from openmvsep.service.errors import ServiceError
from openmvsep.service.naming import human_size, job_hash, split_name
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.files import Storage
from openmvsep.store.models import Job, RemoteJob, User, WorkItem

PREMIUM, REGISTERED, UNREGISTERED = 2, 1, 0
PLAN_NAMES = {PREMIUM: "premium", REGISTERED: "registered", UNREGISTERED: "unregistered"}
ACTIVE = ("waiting", "processing", "distributing", "merging")
PREMIUM_GATE = "Seperation type is unavailable until you purchase premium membership"  # MVSep's spelling
NOT_FOUND = "File or File Hash not found"
SHORT_HASH_ALPHABET = string.ascii_letters + string.digits
# The polling path is one statement built once: constructing SQLAlchemy expressions costs more than running
# them, and each round trip to the database counts when every client polls every second.
_waiting = aliased(Job)
_QUEUE_COUNT = (select(func.count()).where(_waiting.status == "waiting", _waiting.plan == Job.plan)
                .correlate(Job).scalar_subquery())
_AHEAD = (select(func.count()).where(_waiting.status == "waiting", or_(
    _waiting.plan > Job.plan, and_(_waiting.plan == Job.plan, _waiting.id < Job.id))).correlate(Job).scalar_subquery())
_QUEUED = or_(Job.status == "waiting", Job.status == "distributing")  # not in_(): it re-expands on every run
_STATUS_QUERY = select(
    Job.id, Job.hash, Job.status, Job.plan, Job.files_deleted, Job.message, Job.finished_chunks, Job.all_chunks,
    Job.sep_type, Job.inputs, Job.files, Job.output_format, Job.finished_at, Job.updated_at,
    case((_QUEUED, _QUEUE_COUNT), else_=0).label("queue_count"),
    case((_QUEUED, _AHEAD), else_=0).label("ahead"),
).where(Job.hash == bindparam("hash"))


@dataclass(frozen=True)
class Upload:
    """An input file the API has already written to a scratch path."""

    path: Path
    filename: str


@dataclass(frozen=True)
class JobRequest:
    sep_type: int
    options_form: Mapping[str, str]
    output_format: int = 0
    is_demo: bool = False
    webhook_url: str | None = None


def is_premium(user: User | None) -> bool:
    """Premium means "spend credits": enabled on the account and something left to spend."""
    return bool(user and user.premium_enabled and user.credits > 0)


def credits_for(duration_s: float, price_coefficient: float, multiplier: float = 1.0) -> int:
    """MVSep's price: floor(seconds × coefficient / 60), and 1 when that is 0."""
    return max(1, floor(duration_s * price_coefficient * multiplier / 60))


def parse_sep_type(value: str | None) -> int:
    if value is None or str(value).strip() == "":
        raise ServiceError("Seperation type is not set")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ServiceError(f"Seperation type '{value}' is not valid") from None


def parse_output_format(value: str | None) -> int:
    if value is None or str(value).strip() == "":
        return 0
    try:
        fmt = int(str(value).strip())
    except ValueError:
        fmt = -1
    if fmt not in audio.FORMATS:
        raise ServiceError(f"output_format must be one of {', '.join(map(str, audio.FORMATS))}")
    return fmt


class JobService:
    def __init__(self, db: Database, storage: Storage, settings: Settings, catalog: Catalog,
                 notify: Callable[[], None] = lambda: None, registry: WeightsRegistry | None = None):
        self.registry = registry  # to tell admins which weights a refused option needs
        self.db = db
        self.storage = storage
        self.settings = settings
        self.catalog = catalog
        self.notify = notify  # wakes the executor when new work is queued

    # ---------------------------------------------------------------- create

    def check_request(self, req: JobRequest, user: User | None) -> tuple[Algorithm, dict[str, str]]:
        """The algorithm and its resolved options, or a refusal; touches nothing."""
        algo = self.catalog.get(req.sep_type)
        if algo is None:
            raise ServiceError(f"Seperation type {req.sep_type} does not exist")
        if algo.price_coefficient > 1 and not is_premium(user):
            raise ServiceError(PREMIUM_GATE)
        try:
            chosen = self.catalog.resolve(req.sep_type, req.options_form)
        except OptionError as e:
            raise ServiceError(str(e)) from None
        reason = self.catalog.unavailable_reason(req.sep_type, chosen)
        if reason:
            raise ServiceError(reason + self._weights_hint(req.sep_type, chosen))
        return algo, chosen

    def _weights_hint(self, sep_type: int, chosen: dict[str, str]) -> str:
        if self.registry is None or "model_type" not in chosen:
            return ""
        entry = self.registry.serving(f"{sep_type}:{chosen['model_type']}")
        if entry is None:
            return (" No public checkpoint for this option is in the server's weights registry; an admin can add one "
                    "in models.yaml in the data directory.")
        return f" An admin installs them with `openmvsep models download {entry.name}` ({entry.filename})."

    def _caller_readonly(self, token: str | None) -> User | None:
        """Who is asking, checked before any work (401 for a bad token comes first)."""
        if not token and self.settings.anonymous_jobs:
            return None
        with self.db.reader() as s:
            return accounts.require_user(s, token)

    def create(self, token: str | None, req: JobRequest, uploads: dict[str, Upload]) -> Job:
        algo, chosen = self.check_request(req, self._caller_readonly(token))
        recipe = RECIPES[req.sep_type]
        missing = [role for role in recipe.inputs if role not in uploads]
        if missing:
            raise ServiceError(f"Missing file field: {', '.join(missing)}" if recipe.inputs != ("audiofile",)
                               else "Please upload an audio file (field 'audiofile') or give a 'url'")
        infos = {role: self._probe(uploads[role]) for role in recipe.inputs}

        def write(s: Session, stored: list[str]) -> Job:
            user = self._caller(s, token)
            self._check_limits(s, user)
            return self._insert_job(s, user, req, algo, chosen, uploads, infos, stored)

        job = self._insert_and_commit(write)
        self.notify()
        return job

    def _caller(self, s: Session, token: str | None) -> User | None:
        if not token and self.settings.anonymous_jobs:
            return None
        user = accounts.require_user(s, token)
        # Lock the account row (PostgreSQL) so two creates of one user cannot both pass the limits.
        s.refresh(user, with_for_update=True)
        return user

    def _probe(self, upload: Upload) -> audio.AudioInfo:
        try:
            info = audio.probe(upload.path)
        except audio.AudioError as e:
            raise ServiceError(f"Could not read the audio file '{upload.filename}': {e}") from None
        if info.duration <= 0:
            raise ServiceError(f"The audio file '{upload.filename}' contains no audio")
        if info.duration > self.settings.max_input_seconds:
            raise ServiceError(
                f"The audio file is too long ({info.duration / 60:.1f} min); the limit is "
                f"{self.settings.max_input_seconds / 60:.0f} min"
            )
        return info

    def _active_count(self, s: Session, user_id: int) -> int:
        jobs = s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user_id, Job.status.in_(ACTIVE)))
        remote = s.scalar(select(func.count()).select_from(RemoteJob).where(
            RemoteJob.user_id == user_id, RemoteJob.status.in_(("waiting", "processing"))))
        return int(jobs or 0) + int(remote or 0)

    def _check_limits(self, s: Session, user: User | None) -> None:
        """Concurrency and daily limits of the caller's plan (premium users are judged when priced)."""
        if user is None:
            return
        premium = is_premium(user)
        limit = self.settings.premium_concurrent_jobs if premium else self.settings.free_concurrent_jobs
        if limit and self._active_count(s, user.id) >= limit:
            raise ServiceError(
                f"You already have {limit} separation(s) in progress; your plan allows {limit} at a time. "
                "Wait until it finishes, or enable premium."
            )
        if not premium and self.settings.free_daily_jobs:
            since = utcnow() - timedelta(days=1)
            today = s.scalar(select(func.count()).select_from(Job).where(
                Job.user_id == user.id, Job.plan < PREMIUM, Job.created_at >= since))
            if (today or 0) >= self.settings.free_daily_jobs:
                raise ServiceError(f"You have used your {self.settings.free_daily_jobs} free separations of the day")

    def _price(self, user: User | None, algo: Algorithm, form: Mapping[str, str], duration: float) -> tuple[int, int]:
        """(plan, credits to charge). Premium-only algorithms were gated in check_request."""
        if user is None:
            return UNREGISTERED, 0
        multiplier = algo.price_multiplier({k: str(v) for k, v in form.items()})
        cost = credits_for(duration, algo.price_coefficient, multiplier)
        if user.premium_enabled and user.credits >= cost:
            return PREMIUM, cost
        if algo.price_coefficient > 1:
            raise ServiceError(f"This separation costs {cost} credits and your balance is {user.credits}")
        return REGISTERED, 0

    def _insert_job(self, s: Session, user: User | None, req: JobRequest, algo: Algorithm, chosen: dict[str, str],
                    uploads: dict[str, Upload], infos: dict[str, audio.AudioInfo], stored: list[str]) -> Job:
        """Store the inputs and add the job, its work items and its charge. `stored` collects the storage
        keys written, so that the caller removes them if the transaction does not commit."""
        recipe = RECIPES[req.sep_type]
        main_role = recipe.inputs[0]
        main = infos[main_role]
        plan, cost = self._price(user, algo, self._price_form(algo, chosen), main.duration)
        now = utcnow()
        digest = _file_digest(uploads[main_role].path)
        hash_value = self._unique_hash(s, now, digest, uploads[main_role].filename)
        inputs: dict[str, dict] = {}
        for role in recipe.inputs:
            up, info = uploads[role], infos[role]
            key = f"temp/{hash_value}" if role == main_role else f"temp/{hash_value}.{role}"
            stored.append(key)
            size = self.storage.put_file(key, up.path)
            inputs[role] = {"key": key, "name": up.filename, "size": size, "duration": info.duration,
                            "sample_rate": info.sample_rate, "channels": info.channels, "tags": info.tags}
        job = Job(
            hash=hash_value, user_id=user.id if user else None, plan=plan, sep_type=req.sep_type, options=chosen,
            output_format=req.output_format, is_demo=req.is_demo,
            long_filenames=bool(user and user.long_filenames_enabled), status="waiting", inputs=inputs,
            duration=main.duration, credits_charged=cost, webhook_url=req.webhook_url, created_at=now,
            updated_at=now, expires_at=now + timedelta(hours=self.settings.retention_hours),
        )
        s.add(job)
        s.flush()
        self._add_work_items(s, job, recipe, main)
        if cost and user is not None:
            accounts.change_credits(s, user, -cost, "charge", job_id=job.id)
        return job

    def _insert_and_commit(self, write: Callable[[Session, list[str]], Job]) -> Job:
        """Run `write` in one transaction; if it does not commit, no stored file stays behind."""
        stored: list[str] = []
        try:
            with self.db.session() as s:
                return write(s, stored)
        except BaseException:
            for key in stored:
                self.storage.delete(key)
            raise

    @staticmethod
    def _price_form(algo: Algorithm, chosen: dict[str, str]) -> dict[str, str]:
        """Chosen options keyed by form field name, the form price rules are written against."""
        return {f.name: chosen[f.server_key] for f in algo.fields if f.server_key in chosen}

    def _add_work_items(self, s: Session, job: Job, recipe: Recipe, info: audio.AudioInfo) -> None:
        """One item for the whole input, or one per chunk of a long input (frames at the rate the engine works at)."""
        cfg = self.settings
        chunks = []
        if recipe.chunkable and info.duration > cfg.chunk_threshold_seconds:
            rate = recipe.sample_rate or info.sample_rate
            chunks = plan_chunks(int(round(info.duration * rate)), int(cfg.chunk_seconds * rate),
                                 int(cfg.chunk_overlap_seconds * rate))
        if len(chunks) > 1:
            job.all_chunks = len(chunks)
            for c in chunks:
                s.add(WorkItem(job_id=job.id, kind="chunk", index=c.index, start_frame=c.start, end_frame=c.end,
                               plan=job.plan, status="waiting"))
        else:
            job.all_chunks = 1
            s.add(WorkItem(job_id=job.id, kind="whole", plan=job.plan, status="waiting"))

    def _unique_hash(self, s: Session, now: datetime, digest: str, filename: str) -> str:
        for attempt in range(100):
            candidate = job_hash(now, digest, filename, attempt)
            if s.scalar(select(Job.id).where(Job.hash == candidate)) is None:
                return candidate
        raise ServiceError("Could not allocate a job id; try again")

    # ---------------------------------------------------------------- remote (URL) inputs

    def create_remote(self, token: str | None, req: JobRequest, url: str, remote_type: str) -> RemoteJob:
        from openmvsep.service.remote import REMOTE_TYPES, RemoteFetchError, direct_url

        remote_type = (remote_type or "direct").strip().lower()
        if remote_type not in REMOTE_TYPES:
            raise ServiceError(f"remote_type must be one of {', '.join(REMOTE_TYPES)}")
        if len(url) > 4096:
            raise ServiceError("The url is too long")
        try:
            direct_url(url, remote_type)
        except RemoteFetchError as e:
            raise ServiceError(str(e)) from None
        algo, chosen = self.check_request(req, self._caller_readonly(token))
        if RECIPES[req.sep_type].inputs != ("audiofile",):
            raise ServiceError("This algorithm needs uploaded files; a url cannot be used")
        with self.db.session() as s:
            user = self._caller(s, token)
            self._check_limits(s, user)
            now = utcnow()
            remote = RemoteJob(
                short_hash=self._short_hash(s), user_id=user.id if user else None,
                plan=PREMIUM if is_premium(user) else REGISTERED if user else UNREGISTERED,
                url=url, remote_type=remote_type,
                params={"sep_type": req.sep_type, "options_form": dict(req.options_form),
                        "output_format": req.output_format, "is_demo": req.is_demo, "webhook_url": req.webhook_url},
                status="waiting", created_at=now, updated_at=now,
            )
            s.add(remote)
        self.notify()
        return remote

    def _short_hash(self, s: Session) -> str:
        while True:
            candidate = "".join(secrets.choice(SHORT_HASH_ALPHABET) for _ in range(16))
            if s.scalar(select(RemoteJob.id).where(RemoteJob.short_hash == candidate)) is None:
                return candidate

    def finish_remote(self, remote_id: int, upload: Upload) -> Job:
        """The remote stage downloaded the file: create the real job for the remote job's owner."""
        with self.db.reader() as s:
            remote = s.get(RemoteJob, remote_id)
            params = dict(remote.params)
            user_id = remote.user_id
        req = JobRequest(params["sep_type"], params["options_form"], params["output_format"], params["is_demo"],
                         params.get("webhook_url"))
        with self.db.reader() as s:
            owner = s.get(User, user_id) if user_id else None
        algo, chosen = self.check_request(req, owner)
        info = self._probe(upload)

        def write(s: Session, stored: list[str]) -> Job:
            remote = s.get(RemoteJob, remote_id)
            user = s.get(User, user_id) if user_id else None
            job = self._insert_job(s, user, req, algo, chosen, {"audiofile": upload}, {"audiofile": info}, stored)
            remote.status, remote.job_hash, remote.updated_at = "done", job.hash, utcnow()
            return job

        job = self._insert_and_commit(write)
        self.notify()
        return job

    def fail_remote(self, remote_id: int, message: str) -> None:
        with self.db.session() as s:
            remote = s.get(RemoteJob, remote_id)
            remote.status, remote.message, remote.updated_at = "failed", message, utcnow()

    def remote_status(self, short_hash: str) -> dict:
        with self.db.reader() as s:
            remote = s.scalar(select(RemoteJob).where(RemoteJob.short_hash == short_hash)) if short_hash else None
            if remote is None:
                return {"success": False, "status": "not_found", "data": {"message": NOT_FOUND}}
            if remote.status == "done":
                return {"success": True, "status": "done",
                        "data": {"hash": remote.job_hash, "link": self.status_link(remote.job_hash)}}
            if remote.status == "failed":
                return {"success": True, "status": "failed", "data": {"message": remote.message or "Download failed"}}
            if remote.status == "processing":
                return {"success": False, "status": "processing",
                        "data": {"message": "Your audio file is being downloaded, please wait a while..."}}
            ahead = s.scalar(select(func.count()).select_from(RemoteJob).where(
                RemoteJob.status == "waiting", RemoteJob.id < remote.id)) or 0
            waiting = s.scalar(select(func.count()).select_from(RemoteJob).where(RemoteJob.status == "waiting")) or 0
            return {"success": True, "status": "waiting", "data": {"queue_count": int(waiting),
                                                                   "current_order": int(ahead) + 1}}

    # ---------------------------------------------------------------- status

    def url(self, path: str) -> str:
        return f"{self.settings.effective_public_url}{path}"

    def file_url(self, key: str, download: str) -> str:
        """Where a client downloads a stored file: the store itself (signed) when so configured, else here."""
        if self.settings.presigned_urls:
            signed = self.storage.presigned_url(key, download, self.settings.presigned_url_seconds)
            if signed:
                return signed
        return self.url(f"/storage/{key}")

    def status_link(self, hash_value: str) -> str:
        return self.url(f"/api/separation/get?hash={quote(hash_value, safe='')}")

    def status(self, hash_value: str) -> dict:
        """The `separation/get` body. A hot path (clients poll every second): Core queries on a bare connection."""
        if not hash_value:
            return {"success": False, "status": "not_found", "data": {"message": NOT_FOUND}}
        with self.db.read_connection() as conn:
            row = conn.execute(_STATUS_QUERY, {"hash": hash_value}).first()
        if row is None or row.files_deleted:
            return {"success": False, "status": "not_found", "data": {"message": NOT_FOUND}}
        return self._status_body(row)

    def _status_body(self, job) -> dict:  # noqa: ANN001 - a row of _STATUS_QUERY
        status = job.status
        if status == "cancelled":
            return {"success": True, "status": "failed", "data": {"message": "The separation was cancelled"}}
        if status == "failed":
            return {"success": True, "status": "failed", "data": {"message": job.message or "Separation failed"}}
        if status == "done":
            return {"success": True, "status": "done", "data": self._done_data(job)}
        # Exact counts: waiting jobs of the same plan, and this job's place in the order workers take them
        # (higher plans first, then first come first served).
        position = {"queue_count": int(job.queue_count), "current_order": int(job.ahead) + 1}
        if status == "waiting":
            return {"success": True, "status": "waiting", "data": position}
        if status == "processing":
            return {"success": True, "status": "processing", "data": {"message": "Your file is being processed"}}
        if status == "distributing":
            data = {**position, "finished_chunks": job.finished_chunks, "all_chunks": job.all_chunks}
            return {"success": True, "status": "distributing", "data": data}
        return {"success": True, "status": "merging",
                "data": {"message": "Merging the separated chunks", "finished_chunks": job.finished_chunks,
                         "all_chunks": job.all_chunks}}

    def _done_data(self, job) -> dict:  # noqa: ANN001 - a row of _DONE_QUERY
        algo = self.catalog.get(job.sep_type)
        main = next(iter(job.inputs.values()))
        fmt = audio.FORMATS[job.output_format]
        data: dict = {
            "hash": job.hash,
            "algorithm": algo.name if algo else str(job.sep_type),
            "algorithm_description": algo.description if algo else "",
            "size": human_size(main["size"]),
            "output_format": fmt.label,
        }
        if main.get("tags"):
            data["tags"] = main["tags"]
        stem, ext = split_name(job.hash)
        host = urlsplit(self.settings.effective_public_url).hostname or "openmvsep"  # no port: ':' breaks names
        input_download = f"{stem}_[{host}]" + (f".{ext}" if ext else "")
        data["input_file"] = {
            "url": self.file_url(main["key"], input_download),
            "size": human_size(main["size"]),
            "download": input_download,
        }
        data["files"] = [
            {"type": f["type"], "url": self.file_url(f["key"], f["download"]), "download": f["download"],
             "size": human_size(f["bytes"]), "bytes": f["bytes"]}
            for f in (job.files or [])
        ]
        data["date"] = accounts.fmt_datetime(job.finished_at or job.updated_at)
        return data

    # ---------------------------------------------------------------- cancel / delete

    def _own_job(self, s: Session, user: User, hash_value: str) -> Job:
        job = s.scalar(select(Job).where(Job.hash == hash_value)) if hash_value else None
        if job is None or job.user_id != user.id or job.files_deleted:
            raise ServiceError(NOT_FOUND)
        return job

    def cancel(self, token: str | None, hash_value: str) -> None:
        with self.db.session() as s:
            user = accounts.require_user(s, token, status=400)
            job = self._own_job(s, user, hash_value)
            self._cancel_waiting(s, job, user)
        self.storage_cleanup(hash_value)

    def _cancel_waiting(self, s: Session, job: Job, user: User) -> None:
        if job.status != "waiting":
            raise ServiceError(f"Only a waiting separation can be cancelled; this one is {job.status}")
        started = s.scalar(select(func.count()).select_from(WorkItem).where(
            WorkItem.job_id == job.id, WorkItem.status != "waiting"))
        if started:
            raise ServiceError("The separation has already started and cannot be cancelled")
        for item in s.scalars(select(WorkItem).where(WorkItem.job_id == job.id)):
            s.delete(item)
        if job.credits_charged:
            accounts.change_credits(s, user, job.credits_charged, "refund", job_id=job.id)
        job.status, job.message, job.updated_at = "cancelled", "Cancelled by the user", utcnow()
        job.finished_at = utcnow()

    def delete(self, token: str | None, hash_value: str) -> None:
        with self.db.session() as s:
            user = accounts.require_user(s, token, status=400)
            job = self._own_job(s, user, hash_value)
            if job.status == "waiting":
                self._cancel_waiting(s, job, user)
            elif job.status in ACTIVE:
                raise ServiceError("The separation is being processed; cancel is not possible and delete must wait")
            job.files_deleted, job.expires_at, job.updated_at = True, utcnow(), utcnow()
            keys = job.storage_keys()
        for key in keys:
            self.storage.delete(key)
        self.storage.delete_prefix(f"work/{job.id}")

    def storage_cleanup(self, hash_value: str) -> None:
        """Inputs of a job that will never run are of no use: remove them now."""
        with self.db.reader() as s:
            job = s.scalar(select(Job).where(Job.hash == hash_value))
            keys = [i["key"] for i in job.inputs.values()] if job else []
        for key in keys:
            self.storage.delete(key)

    # ---------------------------------------------------------------- views

    def algorithm_summary(self, sep_type: int, *, with_group: bool) -> dict:
        algo = self.catalog.get(sep_type)
        raw = algo.raw if algo else {"name": str(sep_type), "algorithm_group_id": 0, "orientation": 0,
                                     "render_id": sep_type, "order_id": 0, "created_at": None, "updated_at": None}
        out = {k: raw.get(k) for k in ("name", "algorithm_group_id", "orientation", "render_id", "order_id",
                                       "created_at", "updated_at")}
        if with_group:
            out["algorithm_group"] = dict(raw.get("algorithm_group") or {"id": raw.get("algorithm_group_id"),
                                                                         "name": "", "created_at": None,
                                                                         "updated_at": None})
        return out

    def history(self, token: str | None, start: int, limit: int) -> list[dict]:
        with self.db.reader() as s:
            user = accounts.require_user(s, token, status=400)
            rows = s.scalars(select(Job).where(Job.user_id == user.id).order_by(Job.id.desc())
                             .offset(start).limit(limit)).all()
            now = utcnow()
            items = []
            for job in rows:
                exists = not job.files_deleted and job.expires_at > now and job.status != "cancelled"
                items.append({
                    "id": job.id, "hash": job.hash,
                    "created_at": accounts.fmt_datetime(job.created_at),
                    "updated_at": accounts.fmt_datetime(job.updated_at),
                    "job_exists": exists,
                    "credits": job.credits_charged if exists else None,
                    "time_left": floor((job.expires_at - now).total_seconds() / 3600),
                    "algorithm": self.algorithm_summary(job.sep_type, with_group=True),
                })
            return items

    def current_queue(self, s: Session, user: User) -> list[dict]:
        rows = s.scalars(select(Job).where(Job.user_id == user.id, Job.status.in_(ACTIVE)).order_by(Job.id)).all()
        return [{"hash": j.hash, "status": j.status, "sep_type": j.sep_type,
                 "created_at": accounts.fmt_datetime(j.created_at)} for j in rows]

    def queue_summary(self, token: str | None) -> dict:
        with self.db.reader() as s:
            counts = dict(s.execute(select(Job.plan, func.count()).where(Job.status == "waiting")
                                    .group_by(Job.plan)).all())
            in_process = s.scalar(select(func.count()).select_from(Job).where(
                Job.status.in_(("processing", "distributing", "merging")))) or 0
            body: dict = {"success": True, "queue": {
                "in_process": int(in_process), "premium": int(counts.get(PREMIUM, 0)),
                "registered": int(counts.get(REGISTERED, 0)), "unregistered": int(counts.get(UNREGISTERED, 0))}}
            user = accounts.user_by_token(s, token)
            if user is not None:
                plan = PREMIUM if is_premium(user) else REGISTERED
                mine = {"plan": PLAN_NAMES[plan], "queue": int(counts.get(plan, 0))}
                body["plan"] = mine
                body["current"] = dict(mine)
                if self.settings.free_daily_jobs:
                    used = s.scalar(select(func.count()).select_from(Job).where(
                        Job.user_id == user.id, Job.plan < PREMIUM,
                        Job.created_at >= utcnow() - timedelta(days=1))) or 0
                    body["free_separations"] = {"left": max(0, self.settings.free_daily_jobs - int(used)),
                                                "max": self.settings.free_daily_jobs}
            return body

    def demo(self, start: int, limit: int, sep_type: int | None = None) -> list[dict]:
        with self.db.reader() as s:
            q = select(Job).where(Job.is_demo.is_(True), Job.status == "done", Job.files_deleted.is_(False),
                                  Job.expires_at > utcnow())
            if sep_type is not None:
                q = q.where(Job.sep_type == sep_type)
            rows = s.scalars(q.order_by(Job.id.desc()).offset(start).limit(limit)).all()
            out = []
            for job in rows:
                main = next(iter(job.inputs.values()))
                out.append({
                    "hash": job.hash,
                    "date": job.created_at.strftime("%Y-%m-%d %H:%M"),
                    "input_audio": self.url(f"/storage/{main['key']}"),
                    "size": human_size(main["size"]),
                    "algorithm": self.algorithm_summary(job.sep_type, with_group=False),
                })
            return out


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

