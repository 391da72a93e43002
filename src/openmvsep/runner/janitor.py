"""The janitor: files of failed jobs (at once) and of expired jobs (the rows stay: history shows them), zips of
finished Quality Checker entries, dead processes' scratch, and stored files no row names."""

from __future__ import annotations

import time

from sqlalchemy import select, update

from openmvsep.store.db import Database, utcnow
from openmvsep.store.files import Storage
from openmvsep.store.models import Job, QcEntry
from openmvsep.store.status import EntryStatus, JobStatus


def sweep(db: Database, storage: Storage, orphan_grace_seconds: float) -> None:
    """Everything the janitor does, in one pass."""
    sweep_failed(db, storage)
    sweep_expired(db, storage)
    sweep_orphans(db, storage, orphan_grace_seconds)


def sweep_expired(db: Database, storage: Storage, *, batch: int = 200) -> int:
    """Delete the files of expired jobs. Returns jobs swept."""
    swept = 0
    while True:
        with db.session() as s:
            jobs = s.scalars(
                select(Job).where(Job.files_deleted.is_(False), Job.expires_at <= utcnow()).limit(batch)
            ).all()
            for job in jobs:
                job.files_deleted = True
            keys = [k for job in jobs for k in job.storage_keys()]
            ids = [job.id for job in jobs]
        for key in keys:
            storage.delete(key)
        for job_id in ids:
            storage.delete_prefix(f"work/{job_id}")
        swept += len(jobs)
        if len(jobs) < batch:
            break
    _sweep_finished_submissions(db, storage)
    storage.sweep_dead_scratch()
    return swept


def sweep_failed(db: Database, storage: Storage, job_id: int | None = None, *, batch: int = 200) -> int:
    """Delete the inputs of failed jobs (their credits were refunded: nothing of them stays downloadable) and
    whatever outputs they left; the row still answers `failed` until it expires. Only `job_id`'s when given (the
    worker that failed it, right away). Files go first and the mark after, so a crash in between is retried.
    Returns jobs swept."""
    swept = 0
    while True:
        query = select(Job.id, Job.inputs, Job.files).where(
            Job.status == JobStatus.FAILED, Job.inputs_deleted.is_(False)
        )
        if job_id is not None:
            query = query.where(Job.id == job_id)
        with db.reader() as s:
            rows = s.execute(query.limit(batch)).all()
        for row in rows:
            for key in [i["key"] for i in row.inputs.values()] + [f["key"] for f in (row.files or [])]:
                storage.delete(key)
            storage.delete_prefix(f"work/{row.id}")
        if rows:
            with db.session() as s:
                s.execute(update(Job).where(Job.id.in_([row.id for row in rows])).values(inputs_deleted=True))
        swept += len(rows)
        if len(rows) < batch:
            return swept


def _sweep_finished_submissions(db: Database, storage: Storage) -> None:
    """Zips of Quality Checker entries whose scoring ended without their worker (given up after lost leases)."""
    with db.session() as s:
        entries = s.scalars(
            select(QcEntry).where(
                QcEntry.status.in_((EntryStatus.DONE, EntryStatus.FAILED)), QcEntry.zip_key.is_not(None)
            )
        ).all()
        keys = [e.zip_key for e in entries if e.zip_key is not None]  # the query selected non-null ones
        for entry in entries:
            entry.zip_key = None
    for key in keys:
        storage.delete(key)


def sweep_orphans(db: Database, storage: Storage, grace_seconds: float) -> int:
    """Stored inputs and submissions that no row names: a process stopped between storing a file and committing
    its row. Only files older than `grace_seconds` (a create in flight stores its file before its row commits)."""
    cutoff = time.time() - grace_seconds
    removed = 0
    for prefix, owners in (("temp", _job_owners), ("qc", _qc_owners)):
        names = {key.split("/", 1)[1]: key for key, mtime in storage.list(prefix) if mtime < cutoff}
        if names:
            owned = owners(db, set(names))
            for name, key in names.items():
                if name not in owned:
                    storage.delete(key)
                    removed += 1
    return removed


def _job_owners(db: Database, names: set[str]) -> set[str]:
    """The names that are a job's input: `[<token>/]<hash>` (the main input) or `[<token>/]<hash>.<role>`."""
    candidates = {n: {base, base.rsplit(".", 1)[0]} for n in names for base in [n.rsplit("/", 1)[-1]]}
    hashes = _existing(db, Job.hash, set().union(*candidates.values()))
    return {n for n, maybe in candidates.items() if maybe & hashes}


def _qc_owners(db: Database, names: set[str]) -> set[str]:
    ids = {n: int(n.split(".", 1)[0]) for n in names if n.split(".", 1)[0].isdigit()}
    existing = _existing(db, QcEntry.id, set(ids.values()))
    return {n for n, i in ids.items() if i in existing}


def _existing(db: Database, column, values: set) -> set:
    found: set = set()
    ordered = list(values)
    with db.reader() as s:
        for i in range(0, len(ordered), 500):
            found |= set(s.scalars(select(column).where(column.in_(ordered[i : i + 500]))))
    return found
