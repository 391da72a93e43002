"""What becomes an event, and for which receivers: written to the outbox in the caller's transaction.

A job's end is written by the transaction that ends the job (service/lifecycle.py), a Quality Checker entry's
first scores by the one that records them, so an event exists exactly when what it reports does, and a worker
never waits on a receiver. Receivers: the `webhook_url` a create named (MVSep's body, as always), and each of the
owner's endpoints that is enabled and wants that event type.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from openmvsep.store.db import utcnow
from openmvsep.store.models import Job, QcEntry, WebhookEndpoint, WebhookEvent
from openmvsep.store.status import JobStatus, WebhookStatus

SEPARATION_DONE = "separation.done"
SEPARATION_FAILED = "separation.failed"
QUALITY_SCORED = "quality_checker.scored"
TEST = "webhook.test"  # sent on its owner's request only; no endpoint subscribes to it
SUBSCRIBABLE = (SEPARATION_DONE, SEPARATION_FAILED, QUALITY_SCORED)
JOB_EVENTS = {JobStatus.DONE: SEPARATION_DONE, JobStatus.FAILED: SEPARATION_FAILED}


def new_event(
    event_type: str,
    url: str,
    *,
    user_id: int | None,
    job_id: int | None = None,
    entry_id: int | None = None,
    endpoint_id: int | None = None,
) -> WebhookEvent:
    now = utcnow()
    return WebhookEvent(
        event_id=f"evt_{uuid.uuid4().hex}",
        event_type=event_type,
        job_id=job_id,
        entry_id=entry_id,
        user_id=user_id,
        endpoint_id=endpoint_id,
        url=url,
        status=WebhookStatus.PENDING,
        next_attempt_at=now,
        attempts=0,
        created_at=now,
        updated_at=now,
        queued_at=now,
    )


def subscribed(s: Session, user_id: int, event_type: str) -> list[WebhookEndpoint]:
    """The user's enabled endpoints that want `event_type` (an endpoint without a filter wants every type)."""
    endpoints = s.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id == user_id, WebhookEndpoint.disabled.is_(False))
        .order_by(WebhookEndpoint.id)
    )
    return [e for e in endpoints if e.event_types is None or event_type in e.event_types]


def queue_job_end(s: Session, job: Job) -> None:
    """The job's end (done or failed), for its `webhook_url` and its owner's endpoints."""
    event_type = JOB_EVENTS.get(JobStatus(job.status))
    if event_type is None:
        return
    if job.webhook_url:
        s.add(new_event(event_type, job.webhook_url, user_id=job.user_id, job_id=job.id))
    if job.user_id is not None:
        for endpoint in subscribed(s, job.user_id, event_type):
            s.add(new_event(event_type, endpoint.url, user_id=job.user_id, job_id=job.id, endpoint_id=endpoint.id))


def queue_entry_scored(s: Session, entry: QcEntry) -> None:
    """A Quality Checker entry has its leaderboard scores, for its owner's endpoints."""
    if entry.user_id is None:
        return
    for endpoint in subscribed(s, entry.user_id, QUALITY_SCORED):
        s.add(
            new_event(QUALITY_SCORED, endpoint.url, user_id=entry.user_id, entry_id=entry.id, endpoint_id=endpoint.id)
        )
