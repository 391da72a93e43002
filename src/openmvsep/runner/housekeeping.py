"""What some process must do now and then whatever the executor: take back work whose worker went silent
(expired leases), run the janitor and forget expired idempotency keys. Idempotent, so several API processes may
each do it."""

from __future__ import annotations

import time

from openmvsep.runner.janitor import sweep, sweep_failed
from openmvsep.service import idempotency, lifecycle
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage


class Housekeeping:
    def __init__(self, db: Database, storage: Storage, settings: Settings):
        self.db, self.storage, self.settings = db, storage, settings
        self._next_sweep = 0.0

    def run_once(self) -> int:
        """One pass; returns how many pieces of work went back to the queue."""
        released = lifecycle.release_lost_work(self.db, self.settings.max_attempts)
        if released:  # some may have failed for good (refunded): their inputs go now, not at the next sweep
            sweep_failed(self.db, self.storage)
        if time.monotonic() >= self._next_sweep:
            sweep(self.db, self.storage, self.settings.orphan_grace_seconds)
            idempotency.prune(self.db, self.settings.idempotency_hours)
            self._next_sweep = time.monotonic() + self.settings.janitor_interval_seconds
        return released
