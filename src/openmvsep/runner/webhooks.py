"""Webhook senders: a few light threads of each API process that deliver the outbox's due events.

Not a separation worker: a receiver that never answers holds one sender for one timeout, never a GPU. Every API
process runs them (`serve` with the local executor, and each API process beside Celery workers); the outbox's
leases (service/webhooks) keep two processes from sending one event. The body is rendered when it is sent, by
the presenters the API answers with, so a receiver gets exactly what a client polling the job (or the Quality
Checker entry) would, its links naming the address the job was created through (jobs.link_base) when no public
URL is configured; it is signed for this attempt, with the secrets in force now.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

from openmvsep.net import AddressRefused, RemoteFetchError, post_body
from openmvsep.presenters import webhooks as bodies
from openmvsep.presenters.jobs import JobPresenter
from openmvsep.service import webhooks
from openmvsep.service.errors import ServiceError
from openmvsep.service.jobs import JobService
from openmvsep.service.quality import QualityService
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow

log = logging.getLogger("openmvsep.webhooks")


class WebhookSenders:
    def __init__(
        self, settings: Settings, db: Database, jobs: JobService, present: JobPresenter, quality: QualityService
    ):
        self.settings, self.db, self.jobs, self.present, self.quality = settings, db, jobs, present, quality
        self.schedule = webhooks.RetrySchedule.of(settings)
        self.name = f"webhooks:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(max(self.settings.webhook_senders, 0)):
            thread = threading.Thread(
                target=self._loop, args=(f"{self.name}:{index}",), name=f"openmvsep-webhooks-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.settings.webhook_timeout_seconds + 5)
        self._threads.clear()

    def _loop(self, sender: str) -> None:
        while not self._stop.is_set():
            try:
                if self.send_next(sender):
                    continue
            except Exception:  # a database outage: the next pass tries again
                log.exception("webhook sender pass failed")
            self._stop.wait(self.settings.webhook_poll_seconds)

    def body(self, delivery: webhooks.Delivery) -> dict:
        """What this event's receiver gets (ServiceError: what it reports is gone)."""
        if delivery.job_hash is not None:
            row = self.jobs.queries.status_row(delivery.job_hash)
            # No request here: the links name the address the job's creator reached (unless a public URL is set).
            present = self.present.at(row.link_base) if row is not None else self.present
            answer = bodies.mvsep_body(delivery.job_hash, present.status(row))
            if delivery.endpoint_id is None:
                return answer  # a create's webhook_url: MVSep's body, unchanged
        elif delivery.entry_id is not None:
            answer = bodies.entry_answer(self.quality.entry(str(delivery.entry_id)))
        else:
            answer = bodies.test_event_answer(delivery.endpoint_id)
        return bodies.event_body(delivery.event_type, delivery.created_at, answer)

    def send_next(self, sender: str) -> bool:
        """Claim one due event and make one attempt; False when none was due."""
        cfg = self.settings
        delivery = webhooks.claim_due(self.db, sender, cfg.webhook_lease_seconds, cfg.webhook_max_attempts)
        if delivery is None:
            return False
        started_at = utcnow()
        payload: dict | None = None

        def failed(error: str, *, http_status: int | None = None, final: bool = False, latency_ms=None) -> None:
            webhooks.record_failure(
                self.db,
                delivery,
                sender,
                payload=payload,
                error=error,
                http_status=http_status,
                final=final,
                schedule=self.schedule,
                started_at=started_at,
                latency_ms=latency_ms,
            )

        try:
            payload = self.body(delivery)
        except ServiceError as e:  # deleted between the claim and now
            failed(f"nothing to send: {e.message}", final=True)
            return True
        content = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if delivery.secrets:
            at = datetime.fromtimestamp(int(time.time()), tz=timezone.utc)
            headers.update(webhooks.signature_headers(delivery.secrets, delivery.event_id, content, at))
        clock = time.perf_counter()
        try:
            status = post_body(
                delivery.url,
                content,
                headers=headers,
                timeout=cfg.webhook_timeout_seconds,
                allow_private=cfg.remote_allow_private,
            )
        except AddressRefused as e:  # the same address would be refused on every try
            failed(str(e), final=True)
        except RemoteFetchError as e:
            failed(str(e), latency_ms=round((time.perf_counter() - clock) * 1000))
        else:
            latency_ms = round((time.perf_counter() - clock) * 1000)
            if status < 300:
                webhooks.record_delivered(
                    self.db, delivery, sender, payload, status, started_at=started_at, latency_ms=latency_ms
                )
            else:
                failed(f"the receiver answered HTTP {status}", http_status=status, latency_ms=latency_ms)
        return True
