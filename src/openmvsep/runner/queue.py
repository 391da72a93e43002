"""The queue in the database: claiming work with a lease, finishing it, and taking back lost work.

Every transition is one transaction, so a worker that dies at any point leaves the job either where it was
or with an expired lease that `reap_expired` turns back into waiting work (or a failure after
`max_attempts`). Credits are refunded in the same transaction that fails a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from openmvsep.service import accounts
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job, QcEntry, RemoteJob, User, WorkItem

JOB_STATUS_WHILE_RUNNING = {"whole": "processing", "chunk": "distributing", "merge": "merging"}
FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Claim:
    kind: str  # whole | chunk | merge | remote | qc_sdr | qc_metrics
    id: int  # work item id, remote job id, or Quality Checker entry id
    job_id: int | None
    attempts: int


# A Quality Checker entry's two claims: status while queued -> status while running.
QC_PHASES = {"qc_sdr": ("waiting", "scoring"), "qc_metrics": ("scored", "measuring")}


def claim_next(db: Database, worker: str, lease_seconds: float) -> Claim | None:
    """Take the next piece of work: URL downloads and leaderboard SDRs first (they are short), then separations
    by plan, job and index, and last the Quality Checker's secondary metrics (long, and nobody waits on them)."""
    now = utcnow()
    lease = now + timedelta(seconds=lease_seconds)
    with db.session() as s:
        remote = s.scalar(select(RemoteJob).where(RemoteJob.status == "waiting").order_by(
            RemoteJob.plan.desc(), RemoteJob.id).limit(1).with_for_update(skip_locked=True))
        if remote is not None:
            remote.status, remote.worker, remote.lease_until = "processing", worker, lease
            remote.attempts += 1
            remote.updated_at = now
            return Claim("remote", remote.id, None, remote.attempts)
        if (claim := _claim_qc(s, "qc_sdr", worker, lease)) is not None:
            return claim
        item = s.scalar(select(WorkItem).where(WorkItem.status == "waiting").order_by(
            WorkItem.plan.desc(), WorkItem.job_id, WorkItem.index).limit(1).with_for_update(skip_locked=True))
        if item is None:
            return _claim_qc(s, "qc_metrics", worker, lease)
        item.status, item.worker, item.lease_until = "running", worker, lease
        item.attempts += 1
        job = s.get(Job, item.job_id)
        job.status = JOB_STATUS_WHILE_RUNNING[item.kind]
        job.started_at = job.started_at or now
        job.updated_at = now
        return Claim(item.kind, item.id, item.job_id, item.attempts)


def waiting_work(db: Database) -> int:
    """Pieces of work a worker could claim now."""
    with db.reader() as s:
        items = s.scalar(select(func.count()).select_from(WorkItem).where(WorkItem.status == "waiting"))
        remote = s.scalar(select(func.count()).select_from(RemoteJob).where(RemoteJob.status == "waiting"))
        queued_qc = [queued for queued, _ in QC_PHASES.values()]
        qc = s.scalar(select(func.count()).select_from(QcEntry).where(QcEntry.status.in_(queued_qc)))
    return int(items or 0) + int(remote or 0) + int(qc or 0)


def _claim_qc(s: Session, kind: str, worker: str, lease) -> Claim | None:  # noqa: ANN001
    queued, running = QC_PHASES[kind]
    entry = s.scalar(select(QcEntry).where(QcEntry.status == queued).order_by(QcEntry.id).limit(1)
                     .with_for_update(skip_locked=True))
    if entry is None:
        return None
    entry.status, entry.worker, entry.lease_until = running, worker, lease
    entry.attempts += 1
    entry.updated_at = utcnow()
    return Claim(kind, entry.id, None, entry.attempts)


def _table(kind: str):  # noqa: ANN202
    return RemoteJob if kind == "remote" else QcEntry if kind in QC_PHASES else WorkItem


def extend_lease(db: Database, claim: Claim, worker: str, lease_seconds: float) -> None:
    table = _table(claim.kind)
    with db.session() as s:
        s.execute(update(table).where(table.id == claim.id, table.worker == worker)
                  .values(lease_until=utcnow() + timedelta(seconds=lease_seconds)))


def lock_job(s: Session, job_id: int) -> Job:
    """The job row, locked until the transaction ends (PostgreSQL; SQLite's write transaction locks all).

    Workers on other machines finish chunks of the same job at the same time: whoever counts the finished
    chunks or decides the job's fate must hold the job's row, or two of them each miss the other's chunk."""
    return s.scalars(select(Job).where(Job.id == job_id).with_for_update().execution_options(
        populate_existing=True)).one()


def lock_item(s: Session, item_id: int) -> WorkItem:
    return s.scalars(select(WorkItem).where(WorkItem.id == item_id).with_for_update().execution_options(
        populate_existing=True)).one()


def requeue_item(s: Session, item: WorkItem) -> None:
    """Back to the queue for another attempt (its attempts already count the one that just ended), unless its
    job has ended meanwhile (another piece failed it): then the piece ends too."""
    job = lock_job(s, item.job_id)
    if job.status in FINISHED:
        item.status, item.lease_until = "failed", None
        return
    item.status, item.worker, item.lease_until = "waiting", None, None
    if item.kind == "whole":
        job.status = "waiting"
    job.updated_at = utcnow()


def fail_job(s: Session, job: Job, message: str) -> None:
    """Fail a job and give back what it cost, in the caller's transaction."""
    if job.status in FINISHED:
        return
    job.status, job.message = "failed", message
    job.finished_at = job.updated_at = utcnow()
    for item in s.scalars(select(WorkItem).where(WorkItem.job_id == job.id, WorkItem.status.in_(("waiting", "running")))):
        item.status = "failed"
    if job.credits_charged and job.user_id is not None:
        user = s.get(User, job.user_id)
        if user is not None:
            accounts.change_credits(s, user, job.credits_charged, "refund", job_id=job.id)


def finish_item(s: Session, item: WorkItem) -> Job:
    """Mark an item done; when it was the last chunk, queue the merge. Returns the job."""
    item.status, item.lease_until = "done", None
    job = lock_job(s, item.job_id)
    if job.status in FINISHED:  # failed (and refunded) by another piece meanwhile: nothing more to queue
        return job
    job.updated_at = utcnow()
    if item.kind == "chunk":
        job.finished_chunks = s.scalar(select(func.count()).select_from(WorkItem).where(
            WorkItem.job_id == job.id, WorkItem.kind == "chunk", WorkItem.status == "done"))
        if job.finished_chunks == job.all_chunks:
            job.status = "merging"
            s.add(WorkItem(job_id=job.id, kind="merge", index=job.all_chunks, plan=job.plan, status="waiting"))
    return job


def release_lost_work(db: Database, max_attempts: int, *, workers: list[str] | None = None,
                      worker_prefix: str | None = None, forgive: bool = False) -> int:
    """Take back work whose lease expired, or that named workers (known dead) held. Returns how many.

    `forgive`: the workers were stopped on purpose (shutdown), so the attempt does not count.
    """
    now = utcnow()
    released = 0
    with db.session() as s:
        def lost(table):  # noqa: ANN001, ANN202
            cond = [table.status.in_(("running", "processing", "scoring", "measuring"))]
            if workers is not None:
                cond.append(table.worker.in_(workers))
            elif worker_prefix is not None:
                cond.append(table.worker.like(f"{worker_prefix}%"))
            else:
                cond.append(table.lease_until < now)
            # skip_locked: another API process or worker supervisor releasing the same rows right now wins
            return s.scalars(select(table).where(*cond).with_for_update(skip_locked=True)).all()

        for item in lost(WorkItem):
            if item.status != "running":
                continue
            released += 1
            if forgive:
                item.attempts -= 1
            elif item.attempts >= max_attempts:
                item.status = "failed"
                fail_job(s, lock_job(s, item.job_id),
                         f"The separation failed: its worker stopped {item.attempts} times")
                continue
            requeue_item(s, item)
        for remote in lost(RemoteJob):
            if remote.status != "processing":
                continue
            released += 1
            if forgive:
                remote.attempts -= 1
            if remote.attempts >= max_attempts and not forgive:
                remote.status, remote.message = "failed", "The download failed: its worker stopped repeatedly"
            else:
                remote.status, remote.worker, remote.lease_until = "waiting", None, None
            remote.updated_at = now
        for entry in lost(QcEntry):
            released += 1
            if forgive:
                entry.attempts -= 1
            queued = "waiting" if entry.status == "scoring" else "scored"
            if entry.attempts >= max_attempts and not forgive:
                if queued == "waiting":
                    entry.status, entry.msg = "failed", f"Scoring failed: its worker stopped {entry.attempts} times"
                else:  # the leaderboard numbers stand without the secondary metrics
                    entry.status = "done"
                    entry.warnings = [*(entry.warnings or []), "The secondary metrics could not be computed"]
            else:
                entry.status = queued
            entry.worker, entry.lease_until, entry.updated_at = None, None, now
    return released
