"""The one owner of work's life in the database: claim with a lease, heartbeat, finish, fail, take back.

Three kinds of rows are leased work (store.models.Leased): a separation's work items, URL downloads, and
Quality Checker entries. Each kind below says how it is claimed, what its held and queued states are, and
what giving up on it means; the loops over them are written once.

Every transition is one transaction, so a worker that dies at any point leaves the work either where it was or
with an expired lease that `release_lost_work` turns back into waiting work (or a failure after
`max_attempts`). Credits are refunded in the same transaction that fails a job. A result that arrives after its
lease was lost (someone else holds the work now) is ignored: whoever holds it decides.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Select, delete, func, select, update
from sqlalchemy.orm import Session

from openmvsep.errors import INTERNAL
from openmvsep.service import accounts, webhooks
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job, Leased, QcEntry, QcScore, RemoteJob, User, WorkItem
from openmvsep.store.status import JOB_FINISHED, EntryStatus, JobStatus, RemoteStatus, WorkStatus

log = logging.getLogger("openmvsep.jobs")

JOB_STATUS_WHILE_RUNNING = {"whole": JobStatus.PROCESSING, "chunk": JobStatus.DISTRIBUTING, "merge": JobStatus.MERGING}


@dataclass(frozen=True)
class Claim:
    kind: str  # whole | chunk | merge | remote | qc_sdr | qc_metrics
    id: int  # work item id, remote job id, or Quality Checker entry id
    job_id: int | None
    attempts: int


# ---------------------------------------------------------------------------------------------- the kinds


class _Kind(ABC):
    """One kind of leased work: a table, the states it is held in, and what releasing it means."""

    table: ClassVar[type[Leased]]
    held: ClassVar[tuple[str, ...]]

    @abstractmethod
    def hand_back(self, s: Session, row: Any) -> None:
        """Back to the queue for another attempt."""

    @abstractmethod
    def give_up(self, s: Session, row: Any) -> None:
        """Its worker stopped `max_attempts` times: end it."""


class _WorkItems(_Kind):
    table = WorkItem
    held = (WorkStatus.RUNNING,)

    def hand_back(self, s: Session, row: WorkItem) -> None:
        requeue_item(s, row)

    def give_up(self, s: Session, row: WorkItem) -> None:
        row.status = WorkStatus.FAILED
        fail_job(s, lock_job(s, row.job_id), f"The separation failed: its worker stopped {row.attempts} times")


class _Downloads(_Kind):
    table = RemoteJob
    held = (RemoteStatus.PROCESSING,)

    def hand_back(self, s: Session, row: RemoteJob) -> None:
        row.status, row.worker, row.lease_until, row.updated_at = RemoteStatus.WAITING, None, None, utcnow()

    def give_up(self, s: Session, row: RemoteJob) -> None:
        row.status, row.message = RemoteStatus.FAILED, "The download failed: its worker stopped repeatedly"
        row.updated_at = utcnow()


class _Entries(_Kind):
    table = QcEntry
    held = (EntryStatus.SCORING, EntryStatus.MEASURING)
    queued_while = {EntryStatus.SCORING: EntryStatus.WAITING, EntryStatus.MEASURING: EntryStatus.SCORED}

    def hand_back(self, s: Session, row: QcEntry) -> None:
        row.status = self.queued_while[EntryStatus(row.status)]
        row.worker, row.lease_until, row.updated_at = None, None, utcnow()

    def give_up(self, s: Session, row: QcEntry) -> None:
        if row.status == EntryStatus.SCORING:
            row.status, row.msg = EntryStatus.FAILED, f"Scoring failed: its worker stopped {row.attempts} times"
        else:  # the leaderboard numbers stand without the secondary metrics
            row.status = EntryStatus.DONE
            row.warnings = [*(row.warnings or []), "The secondary metrics could not be computed"]
        row.worker, row.lease_until, row.updated_at = None, None, utcnow()


KINDS: tuple[_Kind, ...] = (_WorkItems(), _Downloads(), _Entries())


@dataclass(frozen=True)
class _Source:
    """Where claims come from, in the order workers take them."""

    kind: str  # the claim's kind; "item" takes the work item's own (whole | chunk | merge)
    table: type[Leased]
    queued: str
    running: str
    order: tuple[Any, ...]

    def next(self) -> Select:
        return (
            select(self.table)
            .where(self.table.status == self.queued)
            .order_by(*self.order)
            .limit(1)
            .with_for_update(skip_locked=True)
        )


# Tiers, in the order workers take them: leaderboard SDRs (short), then URL downloads and separation pieces, then
# the Quality Checker's secondary metrics (long, and nobody waits on them). Within a tier the heads of the queues
# compete: the higher plan first, then the older (a piece counts from its job's creation). So a download never
# jumps ahead of a separation queued before it, and with one worker, uploads and URL inputs take turns in the
# order they came rather than every download first.
_REMOTE = _Source(
    "remote", RemoteJob, RemoteStatus.WAITING, RemoteStatus.PROCESSING, (RemoteJob.plan.desc(), RemoteJob.id)
)
_PIECES = _Source(
    "item", WorkItem, WorkStatus.WAITING, WorkStatus.RUNNING, (WorkItem.plan.desc(), WorkItem.job_id, WorkItem.index)
)
CLAIM_ORDER: tuple[tuple[_Source, ...], ...] = (
    (_Source("qc_sdr", QcEntry, EntryStatus.WAITING, EntryStatus.SCORING, (QcEntry.id,)),),
    (_REMOTE, _PIECES),
    (_Source("qc_metrics", QcEntry, EntryStatus.SCORED, EntryStatus.MEASURING, (QcEntry.id,)),),
)
QC_CLAIMS = ("qc_sdr", "qc_metrics")
_TABLE_OF_CLAIM: dict[str, type[Leased]] = {"remote": RemoteJob, "qc_sdr": QcEntry, "qc_metrics": QcEntry}


# ---------------------------------------------------------------------------------------------- claiming


def claim_next(db: Database, worker: str, lease_seconds: float) -> Claim | None:
    """Take the next piece of work under a lease, or None when nothing waits."""
    now = utcnow()
    with db.session() as s:
        for tier in CLAIM_ORDER:
            heads = [(source, row) for source in tier if (row := s.scalar(source.next())) is not None]
            if not heads:
                continue
            source, row = heads[0] if len(heads) == 1 else min(heads, key=lambda head: _turn(s, head[1]))
            row.status, row.worker, row.lease_until = source.running, worker, now + timedelta(seconds=lease_seconds)
            row.attempts += 1
            if isinstance(row, WorkItem):
                job = s.get(Job, row.job_id)
                assert job is not None  # work_items.job_id is a foreign key (ON DELETE CASCADE) to jobs
                job.status = JOB_STATUS_WHILE_RUNNING[row.kind]
                job.started_at = job.started_at or now
                job.updated_at = now
                log.info(
                    "job %s: %s %s claimed by %s (attempt %d)", job.hash, row.kind, row.index, worker, row.attempts
                )
                return Claim(row.kind, row.id, row.job_id, row.attempts)
            row.updated_at = now
            log.info("%s %s claimed by %s (attempt %d)", source.kind, row.id, worker, row.attempts)
            return Claim(source.kind, row.id, None, row.attempts)
    return None


def _turn(s: Session, row: WorkItem | RemoteJob) -> tuple[int, datetime]:
    """Where a queue's head stands against the other heads of its tier (downloads and separation pieces: the
    Quality Checker's tiers have one queue each): higher plan first, then older."""
    if isinstance(row, WorkItem):
        job = s.get(Job, row.job_id)
        assert job is not None  # work_items.job_id is a foreign key (ON DELETE CASCADE) to jobs
        return -row.plan, job.created_at
    return -row.plan, row.created_at


def waiting_work(db: Database) -> int:
    """Pieces of work a worker could claim now: one count per table (the celery top-up asks on every create)."""
    queued: dict[type[Leased], list[str]] = {}
    for tier in CLAIM_ORDER:
        for source in tier:
            queued.setdefault(source.table, []).append(source.queued)
    with db.reader() as s:
        return sum(
            int(s.scalar(select(func.count()).select_from(table).where(table.status.in_(states))) or 0)
            for table, states in queued.items()
        )


def extend_lease(db: Database, claim: Claim, worker: str, lease_seconds: float) -> None:
    """A heartbeat: the holder is alive, its lease runs on."""
    table = _TABLE_OF_CLAIM.get(claim.kind, WorkItem)
    with db.session() as s:
        s.execute(
            update(table)
            .where(table.id == claim.id, table.worker == worker)
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )


def release_lost_work(
    db: Database,
    max_attempts: int,
    *,
    workers: Sequence[str] | None = None,
    worker_prefix: str | None = None,
    forgive: bool = False,
) -> int:
    """Take back work whose lease expired, or that named workers (known dead) held. Returns how many.

    `forgive`: the workers were stopped on purpose (shutdown), so the attempt does not count.
    """
    now = utcnow()
    released = 0
    with db.session() as s:
        for kind in KINDS:
            table = kind.table
            cond: list[ColumnElement[bool]] = [table.status.in_(kind.held)]
            if workers is not None:
                cond.append(table.worker.in_(list(workers)))
            elif worker_prefix is not None:
                cond.append(table.worker.like(f"{worker_prefix}%"))
            else:
                cond.append(table.lease_until < now)
            # skip_locked: another API process or worker supervisor releasing the same rows right now wins
            for row in s.scalars(select(table).where(*cond).with_for_update(skip_locked=True)).all():
                released += 1
                if forgive:
                    row.attempts -= 1
                if row.attempts >= max_attempts and not forgive:
                    kind.give_up(s, row)
                else:
                    kind.hand_back(s, row)
    return released


def workers_holding(db: Database, worker_prefix: str) -> set[str]:
    """Names of the workers (by prefix) that hold any work now."""
    with db.reader() as s:
        return {
            name
            for kind in KINDS
            for name in s.scalars(
                select(kind.table.worker).where(
                    kind.table.status.in_(kind.held), kind.table.worker.like(f"{worker_prefix}%")
                )
            )
            if name
        }


# ---------------------------------------------------------------------------------------------- separations


def lock_job(s: Session, job_id: int) -> Job:
    """The job row, locked until the transaction ends (PostgreSQL; SQLite's write transaction locks all).

    Workers on other machines finish chunks of the same job at the same time: whoever counts the finished
    chunks or decides the job's fate must hold the job's row, or two of them each miss the other's chunk."""
    return s.scalars(
        select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
    ).one()


def lock_item(s: Session, item_id: int) -> WorkItem:
    return s.scalars(
        select(WorkItem).where(WorkItem.id == item_id).with_for_update().execution_options(populate_existing=True)
    ).one()


def _held(row: Leased, worker: str, states: tuple[str, ...]) -> bool:
    return row.status in states and row.worker == worker


def requeue_item(s: Session, item: WorkItem) -> None:
    """Back to the queue for another attempt (its attempts already count the one that just ended), unless its
    job has ended meanwhile (another piece failed it): then the piece ends too."""
    job = lock_job(s, item.job_id)
    if job.status in JOB_FINISHED:
        item.status, item.lease_until = WorkStatus.FAILED, None
        return
    item.status, item.worker, item.lease_until = WorkStatus.WAITING, None, None
    if item.kind == "whole":
        job.status = JobStatus.WAITING
    job.updated_at = utcnow()


def fail_job(s: Session, job: Job, message: str) -> None:
    """Fail a job and give back what it cost, in the caller's transaction."""
    if job.status in JOB_FINISHED:
        return
    job.status, job.message = JobStatus.FAILED, message
    job.finished_at = job.updated_at = utcnow()
    for item in s.scalars(
        select(WorkItem).where(WorkItem.job_id == job.id, WorkItem.status.in_((WorkStatus.WAITING, WorkStatus.RUNNING)))
    ):
        item.status = WorkStatus.FAILED
    if job.credits_charged and job.user_id is not None:
        user = s.get(User, job.user_id)
        if user is not None:
            accounts.change_credits(s, user, job.credits_charged, "refund", job_id=job.id)
    webhooks.queue_job_end(s, job)  # in this transaction: the event exists exactly when the failure does
    log.info("job %s: failed: %s", job.hash, message)


def finish_item(s: Session, item: WorkItem) -> Job:
    """Mark an item done; when it was the last chunk, queue the merge. Returns the job."""
    item.status, item.lease_until = WorkStatus.DONE, None
    job = lock_job(s, item.job_id)
    if job.status in JOB_FINISHED:  # failed (and refunded) by another piece meanwhile: nothing more to queue
        return job
    job.updated_at = utcnow()
    if item.kind == "chunk":
        job.finished_chunks = s.scalars(
            select(func.count())
            .select_from(WorkItem)
            .where(WorkItem.job_id == job.id, WorkItem.kind == "chunk", WorkItem.status == WorkStatus.DONE)
        ).one()
        if job.finished_chunks == job.all_chunks:
            job.status = JobStatus.MERGING
            s.add(WorkItem(job_id=job.id, kind="merge", index=job.all_chunks, plan=job.plan, status=WorkStatus.WAITING))
    return job


def complete_item(db: Database, item_id: int, worker: str, files: list[dict] | None) -> bool:
    """The worker finished its piece; `files` (the job's outputs) when the piece ends the job. Returns whether
    this finished the job (False also for a late result: the lease was lost and someone else owns the piece)."""
    with db.session() as s:
        item = lock_item(s, item_id)
        if not _held(item, worker, (WorkStatus.RUNNING,)):
            return False
        job = finish_item(s, item)
        if files is None or job.status in JOB_FINISHED:
            return False
        job.status, job.files = JobStatus.DONE, files
        job.finished_at = job.updated_at = utcnow()
        webhooks.queue_job_end(s, job)
        log.info("job %s: done (%d file(s))", job.hash, len(files))
        return True


def fail_item(db: Database, item_id: int, worker: str, message: str) -> bool:
    """The piece failed for good: fail its job (refunded). Returns whether it was still ours to fail."""
    with db.session() as s:
        item = lock_item(s, item_id)
        if not _held(item, worker, (WorkStatus.RUNNING,)):
            return False  # not ours any more: whoever holds it now decides
        fail_job(s, lock_job(s, item.job_id), message)
        return True


def retry_or_fail_item(db: Database, item_id: int, worker: str, max_attempts: int) -> bool:
    """After an internal error (the worker logged it): put the piece back in the queue for another attempt, or fail
    the job after the last. Returns whether the job failed."""
    with db.session() as s:
        item = lock_item(s, item_id)
        if _held(item, worker, (WorkStatus.RUNNING,)) and item.attempts < max_attempts:
            requeue_item(s, item)
            return False
        attempts = item.attempts
    return fail_item(db, item_id, worker, f"The separation failed {attempts} times: {INTERNAL}")


# ---------------------------------------------------------------------------------------------- downloads


def fail_download(db: Database, remote_id: int, message: str) -> None:
    with db.session() as s:
        remote = s.get(RemoteJob, remote_id)
        assert remote is not None  # the id comes from a claim, and remote_jobs rows are never deleted
        remote.status, remote.message, remote.updated_at = RemoteStatus.FAILED, message, utcnow()
    log.info("download %s: failed: %s", remote_id, message)


# ---------------------------------------------------------------------------------------------- Quality Checker


def finish_entry(
    db: Database,
    entry_id: int,
    worker: str,
    *,
    means: dict | None = None,
    tracks: dict | None = None,
    warnings: list | None = None,
    final: bool = True,
    failed: str | None = None,
    note: str | None = None,
) -> str | None:
    """Write a scoring claim's outcome: scores (`means`, `tracks`, `warnings`; `final` when no metrics claim
    follows), a failure, or a `note` (the secondary metrics failed; the SDR stands). Returns the storage key of
    the submission when its scoring is over (the caller deletes the file), else None."""
    with db.session() as s:
        entry = s.get(QcEntry, entry_id)
        if entry is None or not _held(entry, worker, _Entries.held):
            return None  # deleted, or taken back after a lost lease: this result is late
        now = utcnow()
        entry.worker, entry.lease_until, entry.updated_at = None, None, now
        if failed is not None:
            entry.status, entry.msg = EntryStatus.FAILED, failed
        elif note is not None:
            entry.status = EntryStatus.DONE
            entry.warnings = [*(entry.warnings or []), note]
        else:
            entry.metrics, entry.tracks, entry.warnings = means, tracks, warnings
            entry.status, entry.msg, entry.attempts = (EntryStatus.DONE if final else EntryStatus.SCORED), "OK", 0
            if entry.scored_at is None:  # its first scores: the leaderboard has it now (a metrics claim adds more)
                entry.scored_at = now
                webhooks.queue_entry_scored(s, entry)
            s.execute(delete(QcScore).where(QcScore.entry_id == entry.id))
            s.add_all(
                QcScore(entry_id=entry.id, stem=stem, metric=metric, value=value)
                for stem, values in (means or {}).items()
                for metric, value in values.items()
            )
        log.info("quality entry %s: %s", entry_id, entry.status)
        if entry.status in (EntryStatus.DONE, EntryStatus.FAILED):
            drop, entry.zip_key = entry.zip_key, None
            return drop
    return None
