"""A worker: claims one piece of work at a time and hands it to the handler of its kind.

Every executor runs the same `Worker.run_claim`; only how workers are started differs. The handlers:
URL downloads (downloads.py), separation pieces and merges (separation.py), Quality Checker claims
(quality_work.py). A heartbeat keeps the claim's lease alive while the handler runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from openmvsep.engine.runtime import Runtime
from openmvsep.runner.downloads import DownloadWork
from openmvsep.runner.quality_work import QualityWork
from openmvsep.runner.separation import SeparationWork
from openmvsep.service import lifecycle
from openmvsep.service.catalog import Catalog
from openmvsep.service.jobs import JobService
from openmvsep.service.quality import QualityService
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage

log = logging.getLogger("openmvsep.worker")


class Worker:
    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        db: Database,
        storage: Storage,
        runtime: Runtime,
        catalog: Catalog,
        jobs: JobService,
        quality: QualityService,
    ):
        self.name, self.settings, self.db, self.storage = name, settings, db, storage
        self.runtime, self.catalog, self.jobs = runtime, catalog, jobs
        separation = SeparationWork(name, settings, db, storage, runtime, catalog)
        scoring = QualityWork(name, settings, db, storage, quality)
        self.handlers: dict[str, Callable[[lifecycle.Claim], None]] = {
            "remote": DownloadWork(settings, db, storage, jobs).run,
            "whole": separation.run_piece,
            "chunk": separation.run_piece,
            "merge": separation.run_merge,
            "qc_sdr": scoring.run,
            "qc_metrics": scoring.run,
        }

    def run_next(self) -> bool:
        """Claim and run one piece of work; False when there was none."""
        claim = lifecycle.claim_next(self.db, self.name, self.settings.lease_seconds)
        if claim is None:
            return False
        self.run_claim(claim)
        return True

    def run_claim(self, claim: lifecycle.Claim) -> None:
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claim, stop), daemon=True)
        beat.start()
        try:
            self.handlers[claim.kind](claim)
        finally:
            stop.set()
            beat.join()

    def _heartbeat(self, claim: lifecycle.Claim, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_seconds):
            try:
                lifecycle.extend_lease(self.db, claim, self.name, self.settings.lease_seconds)
            except Exception:  # a missed beat only shortens the lease; the next one retries
                log.exception("heartbeat failed")
