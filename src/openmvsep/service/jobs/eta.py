"""Elapsed time and an estimate of the time left for a job, from measured speeds: the real-time factor
(wall seconds per second of audio, `(finished_at - started_at) / duration`) of the last finished jobs of the same
algorithm, and while a job runs in chunks, its own chunks' pace.

A waiting job's estimate is the queue's: the work of every job ahead of it (each at its own algorithm's measured
speed) and what the running jobs have left, shared among the live workers, then its own run. The live workers are
those that hold a lease now (each renews its lease with a heartbeat): while jobs wait, every live worker is busy,
so the ones holding work are the ones there are. The speeds are medians over this server's recent jobs, whatever
devices its workers have: a queue cannot know which device will take a job, and the median of the jobs the fleet
actually ran is what a job can expect from it.

Estimates are medians of recent jobs (one slow outlier does not swing them) and cached per process for a short
while, because every open status page and polling client asks every second.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_, select

from openmvsep.service import lifecycle
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job
from openmvsep.store.status import JobStatus

RUNNING = (JobStatus.PROCESSING, JobStatus.DISTRIBUTING, JobStatus.MERGING)
# A whole job's reported progress is trusted for its pace once this much is done (model loading comes first).
MIN_PROGRESS_FOR_PACE = 0.05

T = TypeVar("T")


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
    progress: float = 0.0,
    workers: int = 1,
) -> float | None:
    """Seconds this job's own work has left (the queue before it aside). Running in chunks with some done: its own
    pace. Otherwise the algorithm's factor × the audio's length, less what already ran (with no factor measured, the
    pace of the progress it reported); while waiting, its chunks shared among the workers."""
    if status == JobStatus.DISTRIBUTING and finished_chunks > 0 and all_chunks > finished_chunks and running_s > 0:
        return running_s / finished_chunks * (all_chunks - finished_chunks)
    if factor is None:
        if status in RUNNING and MIN_PROGRESS_FOR_PACE <= progress < 1.0 and running_s > 0:
            return running_s * (1.0 - progress) / progress
        return None
    own = factor * duration
    if status in RUNNING:
        return max(0.0, own - running_s)
    if status == JobStatus.WAITING:
        return own / max(1, min(workers, all_chunks or 1))
    return None


def queue_wait_seconds(ahead_work_s: float, running_left_s: float, workers: int) -> float:
    """Before a waiting job starts: the work queued ahead of it and the running jobs' rest, shared by the workers."""
    return (ahead_work_s + running_left_s) / max(1, workers)


@dataclass(frozen=True)
class Fleet:
    """What the workers are doing now: how many are alive, and the jobs they are on."""

    workers: int  # at least 1: a queue with no live worker waits for the next one that starts
    running: tuple[Any, ...]  # rows (id, status, sep_type, duration, started_at, finished_chunks, all_chunks, progress)


class _Cached:
    """One value per key, reused for `seconds` (a process's polls share the reads); `short` instead for the values
    `is_short` picks (an empty measurement: the first job of an algorithm ending should show at once)."""

    def __init__(self, seconds: float, short: float | None = None, is_short: Callable[[Any], bool] | None = None):
        self.seconds, self.short, self.is_short = seconds, short, is_short
        self._values: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and now < hit[0]:
                return hit[1]
        value = compute()
        keep = self.seconds
        if self.short is not None and self.is_short is not None and self.is_short(value):
            keep = min(keep, self.short)
        with self._lock:
            self._values[key] = (now + keep, value)
        return value


_ROW = (
    Job.id,
    Job.status,
    Job.plan,
    Job.sep_type,
    Job.duration,
    Job.created_at,
    Job.started_at,
    Job.finished_chunks,
    Job.all_chunks,
    Job.progress,
)


class Estimates:
    def __init__(self, db: Database, sample: int, cache_seconds: float, queue_cache_seconds: float = 1.0):
        self.db = db
        self.sample = sample
        self._speeds = _Cached(cache_seconds, short=queue_cache_seconds, is_short=lambda v: v[0] is None)
        self._fleet = _Cached(queue_cache_seconds)

    # ---------------------------------------------------------------- measurements

    def measured(self, sep_type: int | None) -> tuple[float | None, float | None]:
        """(median real-time factor, median wall seconds) of the last finished jobs of `sep_type` (None: of any
        algorithm)."""
        return self._speeds.get(sep_type, lambda: self._measure(sep_type))

    def _measure(self, sep_type: int | None) -> tuple[float | None, float | None]:
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
        return (statistics.median(factors) if factors else None, statistics.median(walls) if walls else None)

    def _factor(self, sep_type: int, *, fallback: bool) -> float | None:
        """The algorithm's measured factor; with `fallback`, any algorithm's when this one has never finished here
        (for jobs ahead in the queue: a rough figure for one of them beats no estimate for everyone behind)."""
        factor = self.measured(sep_type)[0]
        if factor is None and fallback:
            factor = self.measured(None)[0]
        return factor

    def fleet(self) -> Fleet:
        """The live workers and the running jobs (cached for a moment: every waiting job's poll asks)."""
        return self._fleet.get("fleet", self._read_fleet)

    def _read_fleet(self) -> Fleet:
        now = utcnow()
        with self.db.reader() as s:
            names: set[str] = set()
            for kind in lifecycle.KINDS:
                table = kind.table
                held = select(table.worker).where(
                    table.status.in_(kind.held), table.worker.is_not(None), table.lease_until > now
                )
                names.update(name for name in s.scalars(held.distinct()) if name)
            running = tuple(s.execute(select(*_ROW).where(Job.status.in_(RUNNING))).all())
        return Fleet(max(1, len(names)), running)

    # ---------------------------------------------------------------- estimates

    def _own_left(self, row: Any, now: datetime, workers: int, *, fallback: bool = False) -> float | None:
        status = JobStatus(row.status)
        running = (now - row.started_at).total_seconds() if row.started_at and status in RUNNING else 0.0
        return remaining_seconds(
            status,
            row.duration,
            max(0.0, running),
            self._factor(row.sep_type, fallback=fallback),
            finished_chunks=row.finished_chunks or 0,
            all_chunks=row.all_chunks or 0,
            progress=float(row.progress or 0.0),
            workers=workers,
        )

    def _work_ahead(self, row: Any) -> float | None:
        """Seconds of work the waiting jobs served before this one hold, each at its algorithm's speed."""
        ahead = or_(Job.plan > row.plan, and_(Job.plan == row.plan, Job.id < row.id))
        query = (
            select(Job.sep_type, func.sum(Job.duration))
            .where(Job.status == JobStatus.WAITING.value, ahead)
            .group_by(Job.sep_type)
        )
        with self.db.reader() as s:
            totals = s.execute(query).all()
        work = 0.0
        for sep_type, seconds in totals:
            factor = self._factor(sep_type, fallback=True)
            if factor is None:
                return None
            work += factor * float(seconds or 0.0)
        return work

    def seconds_left(self, row: Any, now: datetime | None = None) -> float | None:
        """Seconds until the job is done (None: nothing measured to tell; 0 once done). `row` carries the columns of
        `_ROW` (JobQueries.status_row does)."""
        status = JobStatus(row.status)
        if status == JobStatus.DONE:
            return 0.0
        if status != JobStatus.WAITING and status not in RUNNING:
            return None
        now = now or utcnow()
        if status in RUNNING:
            return self._own_left(row, now, 1)
        fleet = self.fleet()
        own = self._own_left(row, now, fleet.workers)
        ahead = self._work_ahead(row) if own is not None else None
        if own is None or ahead is None:
            return None
        busy = 0.0
        for other in fleet.running:
            left = self._own_left(other, now, fleet.workers, fallback=True)
            if left is None:
                return None
            busy += left
        return queue_wait_seconds(ahead, busy, fleet.workers) + own

    def estimate(self, hash_value: str, now: datetime | None = None) -> Eta | None:
        """The job's elapsed time and time left (None: no such job)."""
        with self.db.reader() as s:
            row = s.execute(select(*_ROW).where(Job.hash == hash_value)).first()
        return None if row is None else self.estimate_row(row, now)

    def estimate_row(self, row: Any, now: datetime | None = None) -> Eta:
        now = now or utcnow()
        return Eta(row.created_at, max(0.0, (now - row.created_at).total_seconds()), self.seconds_left(row, now))
