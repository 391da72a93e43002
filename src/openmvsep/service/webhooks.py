"""Webhooks: when a job ends (done or failed), its `separation/get` body (plus `hash`) is POSTed to its
`webhook_url`.

The job's end writes an event to the outbox (`store.models.WebhookEvent`) in the transaction that ends the job,
so an event is never lost nor sent for a job that did not end. Senders in the API processes (runner/webhooks.py)
claim due events under a lease, so several processes never send one event at once and a crashed sender's
events are taken over when its lease runs out; a failed attempt is retried with a doubling wait, up to
`webhook_max_attempts`. The separation workers never wait on a receiver.

The URL is checked when the job is created, with the address rule of URL inputs, and again on every attempt
(the pinned HTTP of `openmvsep.net`): a name may resolve elsewhere later.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from openmvsep.net import RemoteFetchError, is_public_address, resolve_host
from openmvsep.net.links import split_http_url
from openmvsep.service.errors import ServiceError
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job, WebhookEvent
from openmvsep.store.status import JobStatus, WebhookStatus

log = logging.getLogger("openmvsep.webhooks")

MAX_URL_CHARS = 4096
EVENT_TYPES = {JobStatus.DONE: "separation.done", JobStatus.FAILED: "separation.failed"}


# ---------------------------------------------------------------------------------------------- at create


def check_webhook_url(url: str | None, *, allow_private: bool) -> str | None:
    """The webhook URL a create may keep, or a ServiceError saying why not.

    Only http and https. A host that resolves to a private, loopback or reserved address is refused (unless the
    operator allows private addresses), as for URL inputs. A host that does not resolve now is accepted: DNS may
    be down for a moment or the receiver not yet published, and every delivery attempt checks the address
    again, so nothing private is ever reached either way.
    """
    if url is None:
        return None
    if len(url) > MAX_URL_CHARS:
        raise ServiceError("The webhook_url is too long")
    try:
        parts = split_http_url(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except RemoteFetchError as e:
        raise ServiceError(f"Invalid webhook_url: {e}") from None
    if allow_private:
        return url
    try:
        addresses = resolve_host(parts.hostname or "", port)
    except RemoteFetchError:
        return url  # judged at delivery (see above)
    if not all(is_public_address(address) for address in addresses):
        raise ServiceError("Invalid webhook_url: its host is a private or reserved address")
    return url


# ---------------------------------------------------------------------------------------------- at a job's end


def queue_event(s: Session, job: Job) -> None:
    """Write the job's end to the outbox, in the caller's transaction (the one that ends the job)."""
    event_type = EVENT_TYPES.get(JobStatus(job.status))
    if not job.webhook_url or event_type is None:
        return
    now = utcnow()
    s.add(
        WebhookEvent(
            event_id=f"evt_{uuid.uuid4().hex}",
            event_type=event_type,
            job_id=job.id,
            url=job.webhook_url,
            status=WebhookStatus.PENDING,
            next_attempt_at=now,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
    )


# ---------------------------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Delivery:
    """A claimed event: what a sender needs to send it."""

    id: int
    event_id: str
    event_type: str
    url: str
    job_hash: str
    attempt: int


def claim_due(db: Database, sender: str, lease_seconds: float, max_attempts: int) -> Delivery | None:
    """The next due event under a lease for `sender`, or None: pending ones whose time has come, and ones whose
    sender's lease ran out (it crashed or hung). One whose sender vanished on its last attempt fails here."""
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
            if event.attempts >= max_attempts:  # its last sender never reported back
                event.status, event.worker, event.lease_until = WebhookStatus.FAILED, None, None
                event.last_error = event.last_error or "the sender stopped during the last attempt"
                continue
            event.status, event.worker = WebhookStatus.SENDING, sender
            event.lease_until = now + timedelta(seconds=lease_seconds)
            event.attempts += 1
            job_hash = s.scalar(select(Job.hash).where(Job.id == event.job_id))
            assert job_hash is not None  # job_id is a foreign key (ON DELETE CASCADE)
            return Delivery(event.id, event.event_id, event.event_type, event.url, job_hash, event.attempts)


def _held(s: Session, delivery: Delivery, sender: str) -> WebhookEvent | None:
    event = s.scalars(
        select(WebhookEvent)
        .where(WebhookEvent.id == delivery.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if event.status != WebhookStatus.SENDING or event.worker != sender or event.attempts != delivery.attempt:
        return None  # the lease ran out and another sender took it over: whoever holds it now decides
    return event


def record_delivered(db: Database, delivery: Delivery, sender: str, payload: dict, http_status: int) -> None:
    with db.session() as s:
        event = _held(s, delivery, sender)
        if event is None:
            return
        now = utcnow()
        event.status, event.payload, event.last_status = WebhookStatus.DELIVERED, payload, http_status
        event.delivered_at = event.updated_at = now
        event.worker, event.lease_until = None, None
    log.info("webhook %s for job %s delivered (attempt %d)", delivery.event_id, delivery.job_hash, delivery.attempt)


def record_failure(
    db: Database,
    delivery: Delivery,
    sender: str,
    *,
    payload: dict | None,
    error: str,
    http_status: int | None = None,
    final: bool = False,
    max_attempts: int,
    retry_seconds: float,
) -> None:
    """An attempt failed: due again after a doubling wait, or failed for good (`final`, or the last attempt)."""
    with db.session() as s:
        event = _held(s, delivery, sender)
        if event is None:
            return
        now = utcnow()
        event.payload, event.last_status, event.last_error = payload, http_status, error
        event.worker, event.lease_until, event.updated_at = None, None, now
        if final or event.attempts >= max_attempts:
            event.status = WebhookStatus.FAILED
        else:
            event.status = WebhookStatus.PENDING
            event.next_attempt_at = now + timedelta(seconds=retry_seconds * 2 ** (event.attempts - 1))
    log.warning(
        "webhook %s for job %s to %s failed (attempt %d%s): %s",
        delivery.event_id,
        delivery.job_hash,
        delivery.url,
        delivery.attempt,
        ", no more tries" if final or delivery.attempt >= max_attempts else "",
        error,
    )
