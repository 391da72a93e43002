"""How far a job is, 0..100, for `separation/get`'s `progress`: from its chunks and from what its workers report
while a piece runs.

The job's share of work is counted in pieces. A whole input is one piece (its model passes, then encoding the
outputs: `WHOLE_MODEL_SHARE` of it is the model). A long input is `all_chunks` chunk pieces and one more for the
merge; a chunk counts once its result is stored (`finished_chunks`), and the chunks in a worker's hands add what
the worker reports of them.

Never backwards: the stored fraction (`jobs.progress`) is only ever raised, in the UPDATE itself, so two workers,
a late report from a worker that lost its lease, or a piece that starts over on another worker cannot lower it;
what the chunk counts say can only grow too. So a poller sees the number stand still or rise, never fall, and 100
only when the job is done.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from sqlalchemy import case, literal, update

from openmvsep.store.db import Database
from openmvsep.store.models import Job
from openmvsep.store.status import JobStatus

log = logging.getLogger("openmvsep.worker")

WHOLE_MODEL_SHARE = 0.95  # of a whole input's piece, the model passes (the rest: encoding the outputs)
_REPORTING = (JobStatus.PROCESSING.value, JobStatus.DISTRIBUTING.value)


def percent(
    status: str, stored: float | None, finished_chunks: int | None = 0, all_chunks: int | None = 1
) -> int | None:
    """`progress` for a job in `status` (None: a job that failed or was cancelled has none)."""
    if status == JobStatus.DONE:
        return 100
    if status not in (JobStatus.WAITING, JobStatus.PROCESSING, JobStatus.DISTRIBUTING, JobStatus.MERGING):
        return None
    share = float(stored or 0.0)
    chunks = all_chunks or 1
    if chunks > 1:
        done = chunks if status == JobStatus.MERGING else (finished_chunks or 0)
        share = max(share, done / (chunks + 1))
    return max(0, min(99, math.floor(share * 100 + 1e-9)))  # 100 is for done alone; 1e-9: 0.57 * 100 < 57


def raise_progress(db: Database, job_id: int, fraction: float, *, chunk: bool) -> None:
    """The worker on one of the job's pieces is `fraction` (0..1) through its model passes: raise the job's stored
    progress to match, never lower it."""
    fraction = min(1.0, max(0.0, fraction))
    if chunk:  # the chunks already stored, plus this one's part, of all the chunks and the merge
        value = (Job.finished_chunks + literal(fraction)) / (Job.all_chunks + literal(1.0))
    else:
        value = literal(fraction * WHOLE_MODEL_SHARE)
    with db.session() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(_REPORTING))
            .values(progress=case((Job.progress < value, value), else_=Job.progress))
        )


class ProgressReport:
    """A piece's progress callback `(done, total)` (the engine's, per model pass), written at most every
    `every_seconds`: a poller needs no more, and the database is spared a write per batch. A failed write is logged
    and the piece runs on: progress is for show."""

    def __init__(
        self,
        db: Database,
        job_id: int,
        *,
        chunk: bool,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.db, self.job_id, self.chunk, self.every_seconds, self.clock = db, job_id, chunk, every_seconds, clock
        self._last: float | None = None

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        now = self.clock()
        if self._last is not None and now - self._last < self.every_seconds:
            return
        self._last = now
        try:
            raise_progress(self.db, self.job_id, done / total, chunk=self.chunk)
        except Exception:
            log.warning("job %s: its progress could not be written", self.job_id, exc_info=True)
