"""Webhook senders: a few light threads of each API process that deliver the outbox's due events.

Not a separation worker: a receiver that never answers holds one sender for one timeout, never a GPU. Every API
process runs them (`serve` with the local executor, and each API process beside Celery workers); the outbox's
leases (service/webhooks.py) keep two processes from sending one event. The body is rendered when it is sent, by
the presenter `separation/get` answers with, so a receiver gets exactly what a client polling the job would; its
links name the address the job was created through (jobs.link_base) when no public URL is configured.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from openmvsep.net import AddressRefused, RemoteFetchError, post_json
from openmvsep.presenters.jobs import JobPresenter
from openmvsep.service import webhooks
from openmvsep.service.jobs import JobService
from openmvsep.settings import Settings
from openmvsep.store.db import Database

log = logging.getLogger("openmvsep.webhooks")


class WebhookSenders:
    def __init__(self, settings: Settings, db: Database, jobs: JobService, present: JobPresenter):
        self.settings, self.db, self.jobs, self.present = settings, db, jobs, present
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

    def send_next(self, sender: str) -> bool:
        """Claim one due event and make one attempt; False when none was due."""
        cfg = self.settings
        delivery = webhooks.claim_due(self.db, sender, cfg.webhook_lease_seconds, cfg.webhook_max_attempts)
        if delivery is None:
            return False
        row = self.jobs.queries.status_row(delivery.job_hash)
        # No request here: the links name the address the job's creator reached (unless a public URL is set).
        present = self.present.at(row.link_base) if row is not None else self.present
        payload = {"hash": delivery.job_hash, **present.status(row)}

        def failed(error: str, *, http_status: int | None = None, final: bool = False) -> None:
            webhooks.record_failure(
                self.db,
                delivery,
                sender,
                payload=payload,
                error=error,
                http_status=http_status,
                final=final,
                max_attempts=cfg.webhook_max_attempts,
                retry_seconds=cfg.webhook_retry_seconds,
            )

        try:
            status = post_json(
                delivery.url, payload, timeout=cfg.webhook_timeout_seconds, allow_private=cfg.remote_allow_private
            )
        except AddressRefused as e:  # the same address would be refused on every try
            failed(str(e), final=True)
        except RemoteFetchError as e:
            failed(str(e))
        else:
            if status < 300:
                webhooks.record_delivered(self.db, delivery, sender, payload, status)
            else:
                failed(f"the receiver answered HTTP {status}", http_status=status)
        return True
