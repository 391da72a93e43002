"""What a user does with their webhooks (`/api/app/webhooks*`): endpoints, secrets, test events, redelivery, and
the delivery log.

Everything is the token holder's own: another user's endpoint or event is answered exactly as one that does not
exist, so ids reveal nothing. Every check runs before the one short write; a refusal changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openmvsep.service.accounts import fmt_datetime, require_user
from openmvsep.service.errors import NotFound, ServiceError
from openmvsep.service.numbers import parse_int
from openmvsep.service.webhooks import events, signing
from openmvsep.service.webhooks.urls import check_webhook_url
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import Job, WebhookAttempt, WebhookEndpoint, WebhookEvent, WebhookSecret
from openmvsep.store.status import WebhookStatus

ACCOUNT = "account"  # the `id` that names the account signing secret (a create's webhook_url) in rotate
RECENT_EVENTS = 20  # events the list shows; the log has the rest
_SPLIT = re.compile(r"[\s,]+")
_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def parse_event_types(text: str | None) -> list[str] | None:
    """`event_types` as a comma- or space-separated list of known types; empty means every type (None)."""
    names = [name for name in _SPLIT.split((text or "").strip()) if name]
    if not names:
        return None
    unknown = [name for name in names if name not in events.SUBSCRIBABLE]
    if unknown:
        raise ServiceError(f"Unknown event type '{unknown[0][:64]}'; known: {', '.join(events.SUBSCRIBABLE)}")
    return [name for name in events.SUBSCRIBABLE if name in names]  # one order, no repeats


def parse_flag(name: str, text: str) -> bool:
    value = _FLAGS.get(text.strip().lower())
    if value is None:
        raise ServiceError(f"The {name} field must be 1 or 0.")
    return value


class WebhookService:
    def __init__(self, db: Database, settings: Settings):
        self.db, self.settings = db, settings

    # ---------------------------------------------------------------- reading

    def overview(self, token: str | None) -> dict:
        """The holder's endpoints (secrets masked), account secret (masked) and latest events."""
        with self.db.reader() as s:
            user = require_user(s, token, status=400)
            endpoints = s.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.user_id == user.id).order_by(WebhookEndpoint.id)
            ).all()
            account = s.get(WebhookSecret, user.id)
            latest = s.execute(
                _events_with_hash()
                .where(WebhookEvent.user_id == user.id)
                .order_by(WebhookEvent.id.desc())
                .limit(RECENT_EVENTS)
            ).all()
            return {
                "endpoints": [_endpoint_payload(e) for e in endpoints],
                "signing_secret": signing.masked(account.secret) if account else None,
                "deliveries": [_event_payload(e, job_hash) for e, job_hash in latest],
            }

    def account_secret(self, token: str | None) -> dict:
        """The holder's account signing secret in full (made now if they have none): it signs the deliveries to the
        `webhook_url` of their creates."""
        with self.db.session() as s:
            user = require_user(s, token, status=400)
            row = signing.account_secret(s, user.id, utcnow())
            return {"secret": row.secret, "previous_secret_until": fmt_datetime(row.previous_secret_until)}

    def attempts(
        self,
        token: str | None,
        *,
        event_id: str | None = None,
        endpoint_id: str | None = None,
        start: str | None = None,
        limit: str | None = None,
    ) -> list[dict]:
        """The delivery log, newest attempt first: of one event, one endpoint, or all the holder's."""
        first = parse_int("start", start, 0)
        most = self.settings.webhook_log_page_limit
        count = min(parse_int("limit", limit, min(50, most)), most)
        if first < 0 or count < 1:
            raise ServiceError("The start field must be at least 0 and the limit field at least 1.")
        with self.db.reader() as s:
            user = require_user(s, token, status=400)
            query = (
                select(WebhookAttempt, WebhookEvent)
                .join(WebhookEvent, WebhookEvent.id == WebhookAttempt.webhook_event_id)
                .where(WebhookEvent.user_id == user.id)
            )
            if event_id:
                query = query.where(WebhookEvent.id == self._event(s, user.id, event_id).id)
            if endpoint_id:
                query = query.where(WebhookEvent.endpoint_id == self._endpoint(s, user.id, endpoint_id).id)
            rows = s.execute(query.order_by(WebhookAttempt.id.desc()).offset(first).limit(count)).all()
            return [_attempt_payload(a, e) for a, e in rows]

    # ---------------------------------------------------------------- endpoints

    def add(self, token: str | None, url: str | None, event_types: str | None = None) -> dict:
        """A new endpoint; the answer holds its secret in full (the list shows it masked)."""
        self._holder(token)  # before the URL's address is looked up for anyone
        url = self._checked_url(url)
        wanted = parse_event_types(event_types)
        with self.db.session() as s:
            user = require_user(s, token, status=400)
            mine = s.scalars(select(WebhookEndpoint.url).where(WebhookEndpoint.user_id == user.id)).all()
            if len(mine) >= self.settings.webhook_endpoints_per_user:
                raise ServiceError(f"An account may have at most {self.settings.webhook_endpoints_per_user} endpoints")
            if url in mine:
                raise ServiceError("There is an endpoint for this url already")
            now = utcnow()
            endpoint = WebhookEndpoint(
                user_id=user.id,
                url=url,
                secret=signing.new_secret(),
                event_types=wanted,
                disabled=False,
                created_at=now,
                updated_at=now,
            )
            s.add(endpoint)
            s.flush()
            return {**_endpoint_payload(endpoint), "secret": endpoint.secret}

    def update(
        self,
        token: str | None,
        endpoint_id: str | None,
        *,
        url: str | None = None,
        event_types: str | None = None,
        disabled: str | None = None,
    ) -> dict:
        """Change an endpoint's url, event types (empty: all) or disabled flag; fields not given stay."""
        self._holder(token)
        new_url = self._checked_url(url) if url is not None else None
        wanted = parse_event_types(event_types) if event_types is not None else None
        flag = parse_flag("disabled", disabled) if disabled is not None else None
        with self.db.session() as s:
            user = require_user(s, token, status=400)
            endpoint = self._endpoint(s, user.id, endpoint_id)
            if new_url is not None and new_url != endpoint.url:
                taken = s.scalar(
                    select(func.count())
                    .select_from(WebhookEndpoint)
                    .where(WebhookEndpoint.user_id == user.id, WebhookEndpoint.url == new_url)
                )
                if taken:
                    raise ServiceError("There is an endpoint for this url already")
                endpoint.url = new_url
            if event_types is not None:
                endpoint.event_types = wanted
            if flag is not None:
                endpoint.disabled = flag
            endpoint.updated_at = utcnow()
            return _endpoint_payload(endpoint)

    def delete(self, token: str | None, endpoint_id: str | None) -> None:
        """The endpoint goes, with its events and their log: what was still pending is never sent."""
        with self.db.session() as s:
            user = require_user(s, token, status=400)
            s.delete(self._endpoint(s, user.id, endpoint_id))

    def rotate(self, token: str | None, endpoint_id: str | None) -> dict:
        """A new secret for an endpoint, or for the account (`id=account`); the answer holds it in full. The one it
        replaces keeps signing beside it for `webhook_secret_grace_seconds`."""
        with self.db.session() as s:
            user = require_user(s, token, status=400)
            now = utcnow()
            if (endpoint_id or "").strip() == ACCOUNT:
                row: WebhookEndpoint | WebhookSecret = signing.account_secret(s, user.id, now)
            else:
                row = self._endpoint(s, user.id, endpoint_id)
            signing.rotate(row, now, self.settings.webhook_secret_grace_seconds)
            row.updated_at = now
            return {
                "id": row.id if isinstance(row, WebhookEndpoint) else ACCOUNT,
                "secret": row.secret,
                "previous_secret_until": fmt_datetime(row.previous_secret_until),
            }

    # ---------------------------------------------------------------- events

    def send_test(self, token: str | None, endpoint_id: str | None) -> dict:
        """Queue a `webhook.test` event for one endpoint (whatever its event types; disabled ones refuse)."""
        with self.db.session() as s:
            user = require_user(s, token, status=400)
            endpoint = self._endpoint(s, user.id, endpoint_id)
            if endpoint.disabled:
                raise ServiceError("This endpoint is disabled; enable it first")
            event = events.new_event(events.TEST, endpoint.url, user_id=user.id, endpoint_id=endpoint.id)
            s.add(event)
            s.flush()
            return _event_payload(event, None)

    def redeliver(self, token: str | None, event_id: str | None) -> dict:
        """Send a past event again (same `webhook-id`, so a receiver that has it can tell), with a fresh schedule
        of retries; its earlier attempts stay in the log."""
        with self.db.session() as s:
            user = require_user(s, token, status=400)
            event = self._event(s, user.id, event_id, lock=True)
            if event.status in (WebhookStatus.PENDING, WebhookStatus.SENDING):
                raise ServiceError("This event is being delivered already")
            now = utcnow()
            event.status, event.attempts, event.next_attempt_at = WebhookStatus.PENDING, 0, now
            event.queued_at = event.updated_at = now
            event.delivered_at = None
            job_hash = s.scalar(select(Job.hash).where(Job.id == event.job_id)) if event.job_id else None
            return _event_payload(event, job_hash)

    # ---------------------------------------------------------------- helpers

    def _holder(self, token: str | None) -> None:
        """The token is good (checked again in the write: the account may change in between)."""
        with self.db.reader() as s:
            require_user(s, token, status=400)

    def _checked_url(self, url: str | None) -> str:
        url = (url or "").strip()
        if not url:
            raise ServiceError("The url field is required.")
        checked = check_webhook_url(url, allow_private=self.settings.remote_allow_private, field="url")
        assert checked is not None
        return checked

    @staticmethod
    def _endpoint(s: Session, user_id: int, endpoint_id: str | None) -> WebhookEndpoint:
        if not (endpoint_id or "").strip():
            raise ServiceError("The id field is required.")
        number = parse_int("id", endpoint_id, -1)
        endpoint = s.get(WebhookEndpoint, number)
        if endpoint is None or endpoint.user_id != user_id:
            raise NotFound("Webhook endpoint not found")
        return endpoint

    @staticmethod
    def _event(s: Session, user_id: int, event_id: str | None, *, lock: bool = False) -> WebhookEvent:
        name = (event_id or "").strip()
        if not name:
            raise ServiceError("The event_id field is required.")
        query = select(WebhookEvent).where(WebhookEvent.event_id == name[:64], WebhookEvent.user_id == user_id)
        event = s.scalar(query.with_for_update() if lock else query)
        if event is None:
            raise NotFound("Webhook event not found")
        return event


def _events_with_hash():
    return select(WebhookEvent, Job.hash).outerjoin(Job, Job.id == WebhookEvent.job_id)


def _endpoint_payload(e: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "url": e.url,
        "secret": signing.masked(e.secret),
        "event_types": e.event_types,  # null: every type, those added later included
        "disabled": e.disabled,
        "previous_secret_until": fmt_datetime(e.previous_secret_until),
        "created_at": fmt_datetime(e.created_at),
    }


def _event_payload(e: WebhookEvent, job_hash: str | None) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "type": e.event_type,
        "endpoint_id": e.endpoint_id,  # null: the webhook_url of the job's create
        "url": e.url,
        "hash": job_hash,
        "entry_id": e.entry_id,
        "status": e.status,
        "attempts": e.attempts,
        "last_status": e.last_status,
        "last_error": e.last_error,
        "created_at": fmt_datetime(e.created_at),
        "next_attempt_at": fmt_datetime(e.next_attempt_at) if e.status == WebhookStatus.PENDING else None,
        "delivered_at": fmt_datetime(e.delivered_at),
    }


def _attempt_payload(a: WebhookAttempt, e: WebhookEvent) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "type": e.event_type,
        "endpoint_id": e.endpoint_id,
        "attempt": a.attempt,
        "url": a.url,
        "at": fmt_datetime(a.started_at),
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "error": a.error,
    }
