"""Retention: files of jobs past their expiry are deleted; the job rows stay (history shows them)."""

from __future__ import annotations

import shutil
import time

from sqlalchemy import select

from openmvsep.store.db import Database, utcnow
from openmvsep.store.files import LocalStorage
from openmvsep.store.models import Job, QcEntry

SCRATCH_MAX_AGE_S = 24 * 3600


def sweep_expired(db: Database, storage: LocalStorage, *, batch: int = 200) -> int:
    """Delete the files of expired jobs, and of failed or cancelled jobs' inputs. Returns jobs swept."""
    swept = 0
    while True:
        with db.session() as s:
            jobs = s.scalars(select(Job).where(Job.files_deleted.is_(False), Job.expires_at <= utcnow())
                             .limit(batch)).all()
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
    _sweep_scratch(storage)
    return swept


def _sweep_finished_submissions(db: Database, storage: LocalStorage) -> None:
    """Zips of Quality Checker entries whose scoring ended without their worker (given up after lost leases)."""
    with db.session() as s:
        entries = s.scalars(select(QcEntry).where(QcEntry.status.in_(("done", "failed")),
                                                  QcEntry.zip_key.is_not(None))).all()
        keys = [e.zip_key for e in entries]
        for entry in entries:
            entry.zip_key = None
    for key in keys:
        storage.delete(key)


def _sweep_scratch(storage: LocalStorage) -> None:
    """Scratch folders left by a process that died mid-upload or mid-job."""
    root = storage.root / ".scratch"
    if not root.is_dir():
        return
    cutoff = time.time() - SCRATCH_MAX_AGE_S
    for entry in root.iterdir():
        if entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)
