"""Creating a separation: check everything first, then write.

Token, algorithm, options, audio, limits and credits are checked before anything is stored; then the input goes
into storage and the job, its work items and its ledger row go into the database in one transaction. Any refusal
leaves no row and no file behind. In that same transaction, a job whose outputs a finished job already made is
written done with copies of them instead of work items (reuse.py), and a request's idempotency key is checked and
kept with its answer (service/idempotency.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openmvsep.algorithms.choice import Choice
from openmvsep.algorithms.preference import best_entries
from openmvsep.algorithms.recipes import RECIPES, Recipe
from openmvsep.engine import audio
from openmvsep.engine.joins import plan_chunks
from openmvsep.engine.weights import WeightsRegistry
from openmvsep.service import accounts, webhooks
from openmvsep.service.catalog import Algorithm, Catalog, OptionError
from openmvsep.service.errors import ServiceError
from openmvsep.service.idempotency import Once
from openmvsep.service.jobs.pricing import (
    PREMIUM,
    check_premium_gate,
    check_registered_only,
    is_premium,
    plan_and_price,
)
from openmvsep.service.jobs.reuse import ResultReuse, result_key
from openmvsep.service.naming import input_key, job_hash, storage_token
from openmvsep.service.webhooks import check_webhook_url
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.files import Storage
from openmvsep.store.models import Job, RemoteJob, User, WorkItem
from openmvsep.store.status import JOB_ACTIVE, JobStatus, RemoteStatus, WorkStatus

log = logging.getLogger("openmvsep.jobs")


BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Upload:
    """An input file the API has already written to a scratch path."""

    path: Path
    filename: str
    sha256: str | None = None  # of the content, when known (receive hashes what it copies)

    @classmethod
    def receive(cls, stream: BinaryIO, filename: str | None, directory: Path, role: str) -> Upload:
        """Copy a received file (the API's and the web page's spooled uploads) to `<directory>/<role>.upload` in
        the storage's scratch area (same filesystem: later moves are renames), keeping only the last part of the
        name the client gave, and hash it on the way (idempotency keys and result reuse compare contents); an
        empty file is refused."""
        name = (filename or "audio").replace("\\", "/").rsplit("/", 1)[-1] or "audio"
        path = directory / f"{role}.upload"
        digest = hashlib.sha256()
        stream.seek(0)
        with open(path, "wb") as out:
            while block := stream.read(BLOCK):
                digest.update(block)
                out.write(block)
        if path.stat().st_size == 0:
            raise ServiceError(f"The uploaded file '{name}' is empty")
        return cls(path, name[:255], digest.hexdigest())

    def content_hash(self) -> str:
        return self.sha256 or file_sha256(self.path)

    def hashed(self) -> Upload:
        """This upload with its content hash known (computed now if it was not)."""
        return self if self.sha256 else replace(self, sha256=file_sha256(self.path))


@dataclass(frozen=True)
class JobRequest:
    sep_type: int
    options_form: Mapping[str, str]
    output_format: int = 0
    is_demo: bool = False
    webhook_url: str | None = None
    link_base: str | None = None  # where the request reached this server, for links made later without one


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


class Intake:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        settings: Settings,
        catalog: Catalog,
        registry: WeightsRegistry | None = None,
    ):
        self.db, self.storage, self.settings, self.catalog = db, storage, settings, catalog
        self.registry = registry  # to tell admins which weights a refused option needs
        self.reuse = ResultReuse(storage, settings)

    # ---------------------------------------------------------------- checks that touch nothing

    def check_webhook(self, req: JobRequest) -> None:
        """A create's webhook_url: http(s) to a host that is not private (the rule of URL inputs)."""
        check_webhook_url(req.webhook_url, allow_private=self.settings.remote_allow_private)

    def check_request(self, req: JobRequest, user: User | None) -> tuple[Algorithm, Choice]:
        """The algorithm and the resolved choice, or a refusal."""
        algo = self.catalog.get(req.sep_type)
        if algo is None:
            raise ServiceError(f"Seperation type {req.sep_type} does not exist")
        check_premium_gate(algo, user)
        try:
            choice = self.catalog.resolve(
                req.sep_type, req.options_form, substitute=self.settings.option_policy == "substitute"
            )
        except OptionError as e:
            raise ServiceError(str(e)) from None
        check_registered_only(algo, choice, user)
        reason = self.catalog.unavailable_reason(choice)
        if reason:
            raise ServiceError(reason + self._weights_hint(choice))
        return algo, choice

    def _weights_hint(self, choice: Choice) -> str:
        """Which command makes the refused choice runnable: the weights of the option asked for, or, when no
        public model serves it (or nothing of the sep_type runs here), the best public model of its sep_type."""
        if self.registry is None:
            return ""
        entry = self.registry.serving(choice.option("model_type")) if "model_type" in choice else None
        if entry is not None and self.catalog.is_available(choice.sep_type):
            return f" An admin installs them with `openmvsep models download {entry.name}` ({entry.filename})."
        best = best_entries(self.registry, choice.sep_type)
        if best:
            return (
                f" An admin installs its best public model, {best[0].name} ({best[0].filename}), with "
                f"`openmvsep models download --sep-type {choice.sep_type}`."
            )
        return (
            " No public checkpoint for this option is in the server's weights registry; an admin can add one "
            "in models.yaml in the data directory."
        )

    def caller_readonly(self, token: str | None) -> User | None:
        """Who is asking, checked before any work (401 for a bad token comes first)."""
        if not token and self.settings.anonymous_jobs:
            return None
        with self.db.reader() as s:
            return accounts.require_user(s, token)

    def probe(self, upload: Upload) -> audio.AudioInfo:
        """The upload's facts; its duration is the decoded length, never a header's claim: the length that limits,
        prices and chunks the job. Counting stops at the limit, so a longer file costs no more than the limit."""
        limit = self.settings.max_input_seconds
        try:
            info = audio.probe(upload.path, max_seconds=limit)
        except audio.TooLong as e:
            # The headers' length is named when the stream bears it out past the limit; the count's otherwise.
            claimed = e.claimed if e.claimed is not None and e.claimed > e.counted else None
            length = f"{claimed / 60:.1f} min" if claimed is not None else f"more than {e.counted / 60:.1f} min"
            raise self._too_long(length) from None
        except audio.AudioError as e:
            raise ServiceError(f"Could not read the audio file '{upload.filename}': {e}") from None
        if info.duration <= 0:
            raise ServiceError(f"The audio file '{upload.filename}' contains no audio")
        if info.duration > limit:
            raise self._too_long(f"{info.duration / 60:.1f} min")
        return info

    def _too_long(self, length: str) -> ServiceError:
        limit = self.settings.max_input_seconds
        return ServiceError(f"The audio file is too long ({length}); the limit is {limit / 60:.0f} min")

    # ---------------------------------------------------------------- checks inside the write

    def caller(self, s: Session, token: str | None) -> User | None:
        if not token and self.settings.anonymous_jobs:
            return None
        user = accounts.require_user(s, token)
        # Lock the account row (PostgreSQL) so two creates of one user cannot both pass the limits.
        s.refresh(user, with_for_update=True)
        return user

    def check_limits(self, s: Session, user: User | None) -> None:
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
            if self.jobs_today(s, user.id) >= self.settings.free_daily_jobs:
                raise ServiceError(f"You have used your {self.settings.free_daily_jobs} free separations of the day")

    @staticmethod
    def jobs_today(s: Session, user_id: int) -> int:
        """Free (non-premium) jobs of the last 24 hours."""
        since = utcnow() - timedelta(days=1)
        return int(
            s.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.user_id == user_id, Job.plan < PREMIUM, Job.created_at >= since)
            )
            or 0
        )

    @staticmethod
    def _active_count(s: Session, user_id: int) -> int:
        jobs = s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user_id, Job.status.in_(JOB_ACTIVE)))
        remote = s.scalar(
            select(func.count())
            .select_from(RemoteJob)
            .where(RemoteJob.user_id == user_id, RemoteJob.status.in_((RemoteStatus.WAITING, RemoteStatus.PROCESSING)))
        )
        return int(jobs or 0) + int(remote or 0)

    # ---------------------------------------------------------------- create

    def create(self, token: str | None, req: JobRequest, uploads: dict[str, Upload], once: Once | None = None) -> Job:
        """`once`: the request's idempotency key, checked and recorded in the job's own transaction."""
        algo, choice = self.check_request(req, self.caller_readonly(token))
        self.check_webhook(req)
        recipe = RECIPES[req.sep_type]
        missing = [role for role in recipe.inputs if role not in uploads]
        if missing:
            raise ServiceError(
                f"Missing file field: {', '.join(missing)}"
                if recipe.inputs != ("audiofile",)
                else "Please upload an audio file (field 'audiofile') or give a 'url'"
            )
        infos = {role: self.probe(uploads[role]) for role in recipe.inputs}
        uploads = {role: uploads[role].hashed() for role in recipe.inputs}  # hashed outside the transaction

        def write(s: Session, stored: list[str]) -> Job:
            user = self.caller(s, token)
            if once is not None:  # before the limits: a twin that got in first must answer, not be refused
                once.check(s)
            self.check_limits(s, user)
            job = self.insert_job(s, user, req, algo, choice, uploads, infos, stored)
            if once is not None:
                once.record(s, job)
            return job

        return self.insert_and_commit(write)

    def insert_job(
        self,
        s: Session,
        user: User | None,
        req: JobRequest,
        algo: Algorithm,
        choice: Choice,
        uploads: dict[str, Upload],
        infos: dict[str, audio.AudioInfo],
        stored: list[str],
    ) -> Job:
        """Store the inputs and add the job, its work items and its charge; or, when a finished job made these
        outputs already (reuse.py), the job done at once with copies of them. `stored` collects the storage keys
        written, so that the caller removes them if the transaction does not commit."""
        recipe = RECIPES[req.sep_type]
        main_role = recipe.inputs[0]
        main = infos[main_role]
        plan, cost = plan_and_price(user, algo, choice, main.duration)
        now = utcnow()
        hash_value = self._unique_hash(s, now, uploads[main_role].filename)
        token = storage_token()
        digests = {role: uploads[role].content_hash() for role in recipe.inputs}
        inputs: dict[str, dict] = {}
        for role in recipe.inputs:
            up, info = uploads[role], infos[role]
            key = input_key(token, hash_value, None if role == main_role else role)
            stored.append(key)
            size = self.storage.put_file(key, up.path)
            inputs[role] = {
                "key": key,
                "name": up.filename,
                "size": size,
                "duration": info.duration,
                "sample_rate": info.sample_rate,
                "channels": info.channels,
                "media": info.media,
                "sha256": digests[role],
            }
        reuse_key = result_key(req.sep_type, choice.as_dict(), req.output_format, digests)
        job = Job(
            hash=hash_value,
            user_id=user.id if user else None,
            plan=plan,
            sep_type=req.sep_type,
            options=choice.as_dict(),
            substitutions=choice.substitutions() or None,
            output_format=req.output_format,
            is_demo=req.is_demo,
            long_filenames=bool(user and user.long_filenames_enabled),
            status=JobStatus.WAITING,
            inputs=inputs,
            duration=main.duration,
            credits_charged=cost,
            webhook_url=req.webhook_url,
            link_base=req.link_base,
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(hours=self.settings.retention_hours),
            result_key=reuse_key,
        )
        source = self.reuse.source(s, reuse_key, user)
        files = self.reuse.copy_outputs(source, job, algo.name, choice, stored) if source is not None else None
        reused = source if files is not None else None
        if reused is not None:
            if self.settings.reuse_charge == "none":
                cost = job.credits_charged = 0
            job.status, job.files, job.reused_from, job.finished_at = JobStatus.DONE, files, reused.id, now
        s.add(job)
        s.flush()
        if reused is None:
            self._add_work_items(s, job, recipe, main)
        else:
            webhooks.queue_job_end(s, job)  # in this transaction, as every job's end
        if cost and user is not None:
            accounts.change_credits(s, user, -cost, "charge", job_id=job.id)
        log.info(
            "job %s: created (sep_type %s, %s%s, %.1f s, plan %s, %s credit(s), %s)",
            hash_value,
            req.sep_type,
            choice.as_dict(),
            f", substitutes {choice.substitutions()}" if choice.substitutions() else "",
            main.duration,
            plan,
            cost,
            f"{job.all_chunks} piece(s)" if reused is None else f"done at once with the outputs of job {reused.hash}",
        )
        return job

    def insert_and_commit(self, write: Callable[[Session, list[str]], Job]) -> Job:
        """Run `write` in one transaction; if it does not commit, no stored file stays behind."""
        stored: list[str] = []
        try:
            with self.db.session() as s:
                return write(s, stored)
        except BaseException:
            for key in stored:
                self.storage.delete(key)
            raise

    def _add_work_items(self, s: Session, job: Job, recipe: Recipe, info: audio.AudioInfo) -> None:
        """One item for the whole input, or one per chunk of a long input (frames at the rate the engine works at)."""
        cfg = self.settings
        chunks = []
        if recipe.chunkable and info.duration > cfg.chunk_threshold_seconds:
            rate = recipe.sample_rate or info.sample_rate
            chunks = plan_chunks(
                int(round(info.duration * rate)), int(cfg.chunk_seconds * rate), int(cfg.chunk_overlap_seconds * rate)
            )
        if len(chunks) > 1:
            job.all_chunks = len(chunks)
            for c in chunks:
                s.add(
                    WorkItem(
                        job_id=job.id,
                        kind="chunk",
                        index=c.index,
                        start_frame=c.start,
                        end_frame=c.end,
                        plan=job.plan,
                        status=WorkStatus.WAITING,
                    )
                )
        else:
            job.all_chunks = 1
            s.add(WorkItem(job_id=job.id, kind="whole", plan=job.plan, status=WorkStatus.WAITING))

    @staticmethod
    def _unique_hash(s: Session, now: datetime, filename: str) -> str:
        for _ in range(100):  # 40 random bits: a clash within one second and one name is rare, not impossible
            candidate = job_hash(now, filename)
            if s.scalar(select(Job.id).where(Job.hash == candidate)) is None:
                return candidate
        raise ServiceError("Could not allocate a job id; try again")
