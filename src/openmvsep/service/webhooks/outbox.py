"""Delivering the outbox: claim a due event under a lease, record each attempt, retry on a schedule.

Senders in the API processes (runner/webhooks.py) claim due events under a lease, so several processes never send
one event at once and a crashed sender's events are taken over when its lease runs out. A failed attempt is
retried after a doubling wait (capped), until `webhook_max_attempts` tries or `webhook_max_age_seconds` after the
event was queued, whichever comes first. Every attempt leaves a row in the delivery log (`WebhookAttempt`): the
receiver's status and latency, or the error, and, for an attempt whose sender vanished, that it did.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from openmvsep.service.webhooks import signing
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job, WebhookAttempt, WebhookEndpoint, WebhookEvent
from openmvsep.store.status import WebhookStatus

log = logging.getLogger("openmvsep.webhooks")

GONE = 410  # Standard Webhooks: the receiver says the endpoint is gone for good, so it is disabled


@dataclass(frozen=True)
class RetrySchedule:
    """When a failed event is tried again: `first_wait` doubling each time up to `max_wait` (plus up to 10 % so
    that the events of one outage do not all come back at once), for at most `max_attempts` tries and no later
    than `max_age` seconds after the event was queued (a last try lands exactly then)."""

    max_attempts: int
    first_wait: float
    max_wait: float
    max_age: float

    @classmethod
    def of(cls, settings: Settings) -> RetrySchedule:
        return cls(
            max_attempts=settings.webhook_max_attempts,
            first_wait=settings.webhook_retry_seconds,
            max_wait=settings.webhook_retry_max_seconds,
            max_age=settings.webhook_max_age_seconds,
        )

    def next_attempt(self, attempts: int, queued_at: datetime, now: datetime) -> datetime | None:
        """When to try again after `attempts` failed tries, or None: no more tries."""
        deadline = queued_at + timedelta(seconds=self.max_age)
        if attempts >= self.max_attempts or now >= deadline:
            return None
        wait = min(self.first_wait * 2 ** max(attempts - 1, 0), self.max_wait) * random.uniform(1.0, 1.1)
        return min(now + timedelta(seconds=wait), deadline)


@dataclass(frozen=True)
class Delivery:
    """A claimed event: what a sender needs to make one attempt."""

    id: int
    event_id: str
    event_type: str
    url: str
    attempt: int
    created_at: datetime
    job_hash: str | None = None
    entry_id: int | None = None
    endpoint_id: int | None = None
    secrets: tuple[str, ...] = ()  # signing secrets in force; none for an anonymous job's webhook_url

    @property
    def subject(self) -> str:
        """What the event is about, for the log."""
        if self.job_hash is not None:
            return f"job {self.job_hash}"
        return f"quality entry {self.entry_id}" if self.entry_id is not None else f"endpoint {self.endpoint_id}"


def log_attempt(
    s: Session,
    event: WebhookEvent,
    *,
    started_at: datetime,
    status_code: int | None = None,
    latency_ms: int | None = None,
    error: str | None = None,
) -> None:
    """One row of the delivery log (in the transaction that holds the event's row, so numbers never repeat)."""
    number = s.scalar(
        select(func.count()).select_from(WebhookAttempt).where(WebhookAttempt.webhook_event_id == event.id)
    )
    s.add(
        WebhookAttempt(
            webhook_event_id=event.id,
            attempt=(number or 0) + 1,
            url=event.url,
            started_at=started_at,
            status_code=status_code,
            latency_ms=latency_ms,
            error=error,
        )
    )


def claim_due(db: Database, sender: str, lease_seconds: float, max_attempts: int) -> Delivery | None:
    """The next due event under a lease for `sender`, or None: pending ones whose time has come, and ones whose
    sender's lease ran out (it crashed or hung; that attempt is logged as lost). One whose sender vanished on its
    last attempt, or whose endpoint was disabled meanwhile, fails here."""
    now = utcnow()
    due = or_(
        and_(WebhookEvent.status == WebhookStatus.PENDING, WebhookEvent.next_attempt_at <= now),
        and_(WebhookEvent.status == WebhookStatus.SENDING, WebhookEvent.lease_until < now),
    )
    with db.session() as s:
        while True:
            event = s.scalar(
                select(WebhookEvent)
                .where(due)
                .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if event is None:
                return None
            event.updated_at = now
            if event.status == WebhookStatus.SENDING:  # its sender stopped mid-attempt
                claimed_at = (event.lease_until or now) - timedelta(seconds=lease_seconds)
                log_attempt(s, event, started_at=claimed_at, error="the sender stopped before the attempt ended")
            if event.attempts >= max_attempts:  # its last sender never reported back
                _fail(event, event.last_error or "the sender stopped during the last attempt")
                continue
            endpoint = s.get(WebhookEndpoint, event.endpoint_id) if event.endpoint_id is not None else None
            if endpoint is not None and endpoint.disabled:
                _fail(event, "the endpoint is disabled")
                continue
            if endpoint is not None:
                event.url = endpoint.url  # its owner may have changed it since the event was queued
                secrets = signing.in_force(endpoint, now)
            elif event.user_id is not None:  # a create's webhook_url: the owner's account secret
                secrets = signing.in_force(signing.account_secret(s, event.user_id, now), now)
            else:  # an anonymous job's webhook_url: nobody holds a secret, sent unsigned as before
                secrets = ()
            event.status, event.worker = WebhookStatus.SENDING, sender
            event.lease_until = now + timedelta(seconds=lease_seconds)
            event.attempts += 1
            job_hash = s.scalar(select(Job.hash).where(Job.id == event.job_id)) if event.job_id is not None else None
            return Delivery(
                id=event.id,
                event_id=event.event_id,
                event_type=event.event_type,
                url=event.url,
                attempt=event.attempts,
                created_at=event.created_at,
                job_hash=job_hash,
                entry_id=event.entry_id,
                endpoint_id=event.endpoint_id,
                secrets=secrets,
            )


def _fail(event: WebhookEvent, error: str) -> None:
    event.status, event.worker, event.lease_until, event.last_error = WebhookStatus.FAILED, None, None, error


def _held(s: Session, delivery: Delivery, sender: str) -> WebhookEvent | None:
    event = s.scalars(
        select(WebhookEvent)
        .where(WebhookEvent.id == delivery.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if event is None or event.status != WebhookStatus.SENDING or event.worker != sender:
        return None  # the lease ran out and another sender took it over (or it was deleted): not ours to record
    if event.attempts != delivery.attempt:
        return None
    return event


def record_delivered(
    db: Database,
    delivery: Delivery,
    sender: str,
    payload: dict,
    http_status: int,
    *,
    started_at: datetime | None = None,
    latency_ms: int | None = None,
) -> None:
    with db.session() as s:
        event = _held(s, delivery, sender)
        if event is None:
            return
        now = utcnow()
        log_attempt(s, event, started_at=started_at or now, status_code=http_status, latency_ms=latency_ms)
        event.status, event.payload, event.last_status, event.last_error = (
            WebhookStatus.DELIVERED,
            payload,
            http_status,
            None,
        )
        event.delivered_at = event.updated_at = now
        event.worker, event.lease_until = None, None
    log.info("webhook %s for %s delivered (attempt %d)", delivery.event_id, delivery.subject, delivery.attempt)


def record_failure(
    db: Database,
    delivery: Delivery,
    sender: str,
    *,
    payload: dict | None,
    error: str,
    schedule: RetrySchedule,
    http_status: int | None = None,
    final: bool = False,
    started_at: datetime | None = None,
    latency_ms: int | None = None,
) -> None:
    """An attempt failed: due again on the schedule, or failed for good (`final`, the schedule is over, or the
    endpoint answered 410 Gone, which also disables it)."""
    with db.session() as s:
        event = _held(s, delivery, sender)
        if event is None:
            return
        now = utcnow()
        log_attempt(s, event, started_at=started_at or now, status_code=http_status, latency_ms=latency_ms, error=error)
        event.payload, event.last_status, event.last_error = payload, http_status, error
        event.worker, event.lease_until, event.updated_at = None, None, now
        if http_status == GONE and event.endpoint_id is not None:
            endpoint = s.get(WebhookEndpoint, event.endpoint_id)
            if endpoint is not None:
                endpoint.disabled, endpoint.updated_at = True, now
            final = True
        retry_at = None if final else schedule.next_attempt(event.attempts, event.queued_at or event.created_at, now)
        if retry_at is None:
            event.status = WebhookStatus.FAILED
        else:
            event.status, event.next_attempt_at = WebhookStatus.PENDING, retry_at
    log.warning(
        "webhook %s for %s to %s failed (attempt %d%s): %s",
        delivery.event_id,
        delivery.subject,
        delivery.url,
        delivery.attempt,
        "" if retry_at is not None else ", no more tries",
        error,
    )
