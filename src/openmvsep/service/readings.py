"""What an operator watches, read from the database at the moment of asking.

The numbers come from the tables, not from counters in one process's memory, so every API replica reports the
same queue whichever one the scraper reaches, and a restart loses nothing. The API's `/metrics` route renders
them in Prometheus's format (api/metrics.py); nothing here knows that format.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select

from openmvsep.service import lifecycle
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job, WebhookEvent, WorkItem
from openmvsep.store.status import JobStatus, WebhookStatus, WorkStatus

PLAN_NAMES = {2: "premium", 1: "registered", 0: "unregistered"}
RECENT = timedelta(hours=1)  # the window of the waiting and running times
QUANTILES = (0.5, 0.9, 1.0)
RUNNING = (JobStatus.PROCESSING, JobStatus.DISTRIBUTING, JobStatus.MERGING)


@dataclass
class Readings:
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    waiting_by_plan: dict[str, int] = field(default_factory=dict)
    oldest_wait_seconds_by_plan: dict[str, float] = field(default_factory=dict)
    running_by_plan: dict[str, int] = field(default_factory=dict)  # jobs a worker is on (any stage short of done)
    # Jobs started (waiting) / finished (running) in the last hour: quantile -> seconds, and how many.
    wait_seconds: dict[float, float] = field(default_factory=dict)
    run_seconds: dict[float, float] = field(default_factory=dict)
    recent_started: int = 0
    recent_finished: int = 0
    # Work items now held or waiting, by how many times they were claimed (0: not yet).
    items_by_attempts: dict[int, int] = field(default_factory=dict)
    # Seconds since each worker that holds work last renewed a lease (its heartbeat).
    heartbeat_age_by_worker: dict[str, float] = field(default_factory=dict)
    # The webhook outbox: events by status, and those waiting to retry after a failed attempt.
    webhooks_by_status: dict[str, int] = field(default_factory=dict)
    webhooks_retrying: int = 0


def _quantiles(values: list[float]) -> dict[float, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {q: ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] for q in QUANTILES}


class ReadingsService:
    def __init__(self, db: Database, lease_seconds: float):
        self.db = db
        self.lease_seconds = lease_seconds

    def read(self) -> Readings:
        now = utcnow()
        r = Readings()
        with self.db.reader() as s:
            for status, count in s.execute(select(Job.status, func.count()).group_by(Job.status)):
                r.jobs_by_status[status] = count
            waiting = (
                select(Job.plan, func.count(), func.min(Job.created_at))
                .where(Job.status == JobStatus.WAITING)
                .group_by(Job.plan)
            )
            for plan, count, oldest in s.execute(waiting):
                name = PLAN_NAMES.get(plan, str(plan))
                r.waiting_by_plan[name] = count
                r.oldest_wait_seconds_by_plan[name] = max(0.0, (now - oldest).total_seconds())
            running = select(Job.plan, func.count()).where(Job.status.in_(RUNNING)).group_by(Job.plan)
            for plan, count in s.execute(running):
                r.running_by_plan[PLAN_NAMES.get(plan, str(plan))] = count
            since = now - RECENT
            started = s.execute(select(Job.created_at, Job.started_at).where(Job.started_at >= since)).all()
            finished = s.execute(
                select(Job.started_at, Job.finished_at).where(
                    Job.finished_at >= since, Job.started_at.is_not(None), Job.status == JobStatus.DONE
                )
            ).all()
            attempts = (
                select(WorkItem.attempts, func.count())
                .where(WorkItem.status.in_((WorkStatus.WAITING, WorkStatus.RUNNING)))
                .group_by(WorkItem.attempts)
            )
            r.items_by_attempts = {n: count for n, count in s.execute(attempts)}
            leases: dict[str, float] = defaultdict(lambda: float("inf"))
            for kind in lifecycle.KINDS:
                table = kind.table
                held = select(table.worker, func.max(table.lease_until)).where(
                    table.status.in_(kind.held), table.worker.is_not(None), table.lease_until.is_not(None)
                )
                for worker, lease_until in s.execute(held.group_by(table.worker)):
                    if worker is None or lease_until is None:
                        continue
                    # A heartbeat sets lease_until to its time + lease_seconds.
                    age = max(0.0, (now - lease_until).total_seconds() + self.lease_seconds)
                    leases[worker] = min(leases[worker], age)
            r.heartbeat_age_by_worker = dict(leases)
            for status, count in s.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)):
                r.webhooks_by_status[status] = count
            r.webhooks_retrying = int(
                s.scalar(
                    select(func.count())
                    .select_from(WebhookEvent)
                    .where(WebhookEvent.status == WebhookStatus.PENDING, WebhookEvent.attempts > 0)
                )
                or 0
            )
        r.recent_started = len(started)
        r.recent_finished = len(finished)
        r.wait_seconds = _quantiles([(b - a).total_seconds() for a, b in started if a and b])
        r.run_seconds = _quantiles([(b - a).total_seconds() for a, b in finished if a and b])
        return r
