"""What the views of jobs read: one job's status row, a user's history, the demo list, the queue's counts.

The answers are rows and numbers; their MVSep JSON shapes are the presenters' (openmvsep/presenters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select
from sqlalchemy.orm import aliased

from openmvsep.service import accounts
from openmvsep.service.jobs.intake import Intake
from openmvsep.service.jobs.pricing import PREMIUM, REGISTERED, is_premium
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job
from openmvsep.store.status import JOB_ACTIVE, JobStatus

# The polling path is one statement built once: constructing SQLAlchemy expressions costs more than running
# them, and each round trip to the database counts when every client polls every second.
_waiting = aliased(Job)
_QUEUE_COUNT = (
    select(func.count())
    .where(_waiting.status == JobStatus.WAITING.value, _waiting.plan == Job.plan)
    .correlate(Job)
    .scalar_subquery()
)
_AHEAD = (
    select(func.count())
    .where(
        _waiting.status == JobStatus.WAITING.value,
        or_(_waiting.plan > Job.plan, and_(_waiting.plan == Job.plan, _waiting.id < Job.id)),
    )
    .correlate(Job)
    .scalar_subquery()
)
# not in_(): it re-expands on every run
_QUEUED = or_(Job.status == JobStatus.WAITING.value, Job.status == JobStatus.DISTRIBUTING.value)
_STATUS_QUERY = select(
    Job.id,
    Job.hash,
    Job.status,
    Job.plan,
    Job.files_deleted,
    Job.message,
    Job.finished_chunks,
    Job.all_chunks,
    Job.sep_type,
    Job.options,
    Job.substitutions,
    Job.inputs,
    Job.files,
    Job.output_format,
    Job.finished_at,
    Job.updated_at,
    Job.reused_from,
    # for progress and the time left (eta.py reads these)
    Job.duration,
    Job.created_at,
    Job.started_at,
    Job.progress,
    Job.link_base,
    case((_QUEUED, _QUEUE_COUNT), else_=0).label("queue_count"),
    case((_QUEUED, _AHEAD), else_=0).label("ahead"),
).where(Job.hash == bindparam("hash"))


class JobQueries:
    def __init__(self, db: Database, daily_free_jobs: int):
        self.db = db
        self.daily_free_jobs = daily_free_jobs

    def status_row(self, hash_value: str) -> Any | None:
        """The row `separation/get` answers from (with its queue position), or None. A hot path: Core on a bare
        connection."""
        if not hash_value:
            return None
        with self.db.read_connection() as conn:
            row = conn.execute(_STATUS_QUERY, {"hash": hash_value}).first()
        return None if row is None or row.files_deleted else row

    def job(self, hash_value: str) -> Job | None:
        """One job's whole row, for the web page's result page (None: unknown or its files are deleted)."""
        if not hash_value or len(hash_value) > 255:
            return None
        with self.db.reader() as s:
            job = s.scalar(select(Job).where(Job.hash == hash_value))
        return None if job is None or job.files_deleted else job

    def history(self, token: str | None, start: int, limit: int) -> list[Job]:
        with self.db.reader() as s:
            user = accounts.require_user(s, token, status=400)
            return list(
                s.scalars(select(Job).where(Job.user_id == user.id).order_by(Job.id.desc()).offset(start).limit(limit))
            )

    def demo(self, start: int, limit: int, sep_type: int | None = None) -> list[Job]:
        with self.db.reader() as s:
            q = select(Job).where(
                Job.is_demo.is_(True),
                Job.status == JobStatus.DONE,
                Job.files_deleted.is_(False),
                Job.expires_at > utcnow(),
            )
            if sep_type is not None:
                q = q.where(Job.sep_type == sep_type)
            return list(s.scalars(q.order_by(Job.id.desc()).offset(start).limit(limit)))

    def active_jobs(self, user_id: int) -> list[Job]:
        with self.db.reader() as s:
            return list(
                s.scalars(select(Job).where(Job.user_id == user_id, Job.status.in_(JOB_ACTIVE)).order_by(Job.id))
            )

    def queue(self, token: str | None) -> QueueView:
        with self.db.reader() as s:
            counts = dict(
                s.execute(
                    select(Job.plan, func.count()).where(Job.status == JobStatus.WAITING).group_by(Job.plan)
                ).all()
            )
            in_process = (
                s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.status.in_((JobStatus.PROCESSING, JobStatus.DISTRIBUTING, JobStatus.MERGING)))
                )
                or 0
            )
            user = accounts.user_by_token(s, token)
            plan = used_today = None
            if user is not None:
                plan = PREMIUM if is_premium(user) else REGISTERED
                if self.daily_free_jobs:
                    used_today = Intake.jobs_today(s, user.id)
        return QueueView(
            {int(k): int(v) for k, v in counts.items()}, int(in_process), plan, used_today, self.daily_free_jobs
        )


@dataclass(frozen=True)
class QueueView:
    """The queue as one caller sees it: waiting jobs per plan, jobs running, the caller's plan and free jobs."""

    waiting_by_plan: dict[int, int]
    in_process: int
    plan: int | None  # None: an anonymous caller
    used_today: int | None  # free jobs of the last day, when a daily limit is set
    daily_free_jobs: int
