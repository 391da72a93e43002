"""Elapsed time and an estimate of the time left for a job, from measured speeds: the real-time factor
(wall seconds per second of audio, `(finished_at - started_at) / duration`) of the last finished jobs of the same
algorithm, and while a job runs in chunks, its own chunks' pace.

Estimates are medians of recent jobs (one slow outlier does not swing them) and cached per process for a short
while, because every open status page asks every second.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job
from openmvsep.store.status import JobStatus

RUNNING = (JobStatus.PROCESSING, JobStatus.DISTRIBUTING, JobStatus.MERGING)


@dataclass(frozen=True)
class Eta:
    created_at: datetime  # naive UTC, as stored
    elapsed_s: float  # since the job was created
    remaining_s: float | None  # None: nothing measured to estimate from


def remaining_seconds(
    status: JobStatus,
    duration: float,
    running_s: float,
    factor: float | None,
    *,
    finished_chunks: int = 0,
    all_chunks: int = 0,
    ahead: int = 0,
    typical_job_s: float | None = None,
) -> float | None:
    """Seconds left. Running in chunks with some done: this job's own pace. Otherwise the algorithm's factor ×
    the audio's length, less what already ran; while waiting, plus a typical job's time for each job ahead."""
    if status == JobStatus.DISTRIBUTING and finished_chunks > 0 and all_chunks > finished_chunks and running_s > 0:
        return running_s / finished_chunks * (all_chunks - finished_chunks)
    if factor is None:
        return None
    own = factor * duration
    if status in RUNNING:
        return max(0.0, own - running_s)
    if status == JobStatus.WAITING:
        if ahead and typical_job_s is None:
            return None
        return own + ahead * (typical_job_s or 0.0)
    return None


class Estimates:
    def __init__(self, db: Database, sample: int, cache_seconds: float):
        self.db = db
        self.sample = sample
        self.cache_seconds = cache_seconds
        self._cache: dict[int | None, tuple[float, tuple[float | None, float | None]]] = {}
        self._lock = threading.Lock()

    def measured(self, sep_type: int | None) -> tuple[float | None, float | None]:
        """(median real-time factor, median wall seconds) of the last finished jobs of `sep_type` (None: of any
        algorithm)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(sep_type)
            if hit is not None and now - hit[0] < self.cache_seconds:
                return hit[1]
        query = (
            select(Job.started_at, Job.finished_at, Job.duration)
            .where(Job.status == JobStatus.DONE, Job.started_at.is_not(None), Job.finished_at.is_not(None))
            .order_by(Job.finished_at.desc())
            .limit(self.sample)
        )
        if sep_type is not None:
            query = query.where(Job.sep_type == sep_type)
        with self.db.reader() as s:
            rows = s.execute(query).all()
        walls = [(r.finished_at - r.started_at).total_seconds() for r in rows]
        factors = [w / r.duration for w, r in zip(walls, rows) if r.duration and r.duration > 0 and w >= 0]
        value = (statistics.median(factors) if factors else None, statistics.median(walls) if walls else None)
        with self._lock:
            self._cache[sep_type] = (now, value)
        return value

    def estimate(self, hash_value: str, ahead: int = 0, now: datetime | None = None) -> Eta | None:
        """The job's elapsed time and time left (None: no such job). `ahead`: jobs before it in the queue, as the
        status row counts them."""
        with self.db.reader() as s:
            row = s.execute(
                select(
                    Job.status,
                    Job.sep_type,
                    Job.duration,
                    Job.created_at,
                    Job.started_at,
                    Job.finished_chunks,
                    Job.all_chunks,
                ).where(Job.hash == hash_value)
            ).first()
        if row is None:
            return None
        now = now or utcnow()
        status = JobStatus(row.status)
        running = (now - row.started_at).total_seconds() if row.started_at and status in RUNNING else 0.0
        factor, _ = self.measured(row.sep_type)
        typical = self.measured(None)[1] if ahead else None
        left = remaining_seconds(
            status,
            row.duration,
            running,
            factor,
            finished_chunks=row.finished_chunks or 0,
            all_chunks=row.all_chunks or 0,
            ahead=ahead,
            typical_job_s=typical,
        )
        return Eta(row.created_at, max(0.0, (now - row.created_at).total_seconds()), left)
