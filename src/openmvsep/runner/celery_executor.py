"""The celery executor as an API process sees it: no workers of its own, only messages and housekeeping.

Workers run elsewhere (`openmvsep worker`). Every API process re-queues work whose lease expired, runs the
janitor, and tops the broker up to one message per waiting piece of work every `reconcile_seconds`.
"""

from __future__ import annotations

import logging
import threading

from openmvsep.runner.celery_app import make_celery, top_up
from openmvsep.runner.housekeeping import Housekeeping
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage

log = logging.getLogger("openmvsep.executor")


class CeleryExecutor:
    def __init__(self, settings: Settings, db: Database, storage: Storage):
        self.settings = settings
        self.app = make_celery(settings)
        self.db, self.storage = db, storage
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._reconcile, name="openmvsep-reconcile", daemon=True)
        self._thread.start()

    def _reconcile(self) -> None:
        housekeeping = Housekeeping(self.db, self.storage, self.settings)
        while True:
            try:
                housekeeping.run_once()
                top_up(self.app, self.db, self.settings.celery_queue)
            except Exception:  # a broker or database outage: the next pass tries again
                log.exception("reconcile pass failed")
            if self._stop.wait(self.settings.reconcile_seconds):
                return

    def notify(self) -> None:
        try:
            top_up(self.app, self.db, self.settings.celery_queue)
        except Exception:  # the job is queued in the database; the next reconcile pass sends its message
            log.exception("could not reach the broker; the work will be sent on the next pass")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
