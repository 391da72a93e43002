"""Scoring Quality Checker entries in a worker: the SDR claim, then (at lower priority) the metrics claim.

The outcome is written by the lifecycle (service/lifecycle.py), which ignores a late result: an entry deleted
while it was scored, or taken back after a lost lease.
"""

from __future__ import annotations

import logging

from openmvsep.quality.scoring import Scores, score_metrics, score_sdr
from openmvsep.quality.submission import SubmissionError, open_submission
from openmvsep.service import lifecycle
from openmvsep.service.quality import QualityService
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage

log = logging.getLogger("openmvsep.quality")


class QualityWork:
    def __init__(self, worker: str, settings: Settings, db: Database, storage: Storage, quality: QualityService):
        self.worker, self.settings, self.db, self.storage, self.quality = worker, settings, db, storage, quality

    def run(self, claim: lifecycle.Claim) -> None:
        claimed = self.quality.claimed_entry(claim.id)
        if claimed is None:
            return
        entry, dataset = claimed
        assert entry.zip_key is not None  # claimed_entry returns only entries that still have their zip
        try:
            with self.storage.local_file(entry.zip_key) as zip_path:  # S3: a local copy for this claim
                submission = open_submission(zip_path, dataset, self.quality.limits)
                if claim.kind == "qc_sdr":
                    scores = score_sdr(dataset, submission, threads=self.settings.qc_threads)
                    final = not self.settings.qc_secondary_metrics
                else:
                    scores = Scores(tuple(entry.stems), entry.tracks or {}, list(entry.warnings or []))
                    score_metrics(dataset, submission, scores)
                    final = True
        except SubmissionError as e:
            self._finish(claim, failed=str(e))
            return
        except Exception as e:  # a bug or a broken file: the entry says so, the worker goes on
            log.exception("quality entry %s failed", claim.id)
            if claim.kind == "qc_sdr":
                self._finish(claim, failed=f"Scoring failed: {type(e).__name__}: {e}")
            else:  # the leaderboard numbers stand; only the extra metrics are missing
                self._finish(claim, note=f"The secondary metrics failed: {type(e).__name__}: {e}")
            return
        self._finish(claim, means=scores.means(), tracks=scores.tracks, warnings=scores.warnings, final=final)

    def _finish(self, claim: lifecycle.Claim, **outcome) -> None:
        drop_zip = lifecycle.finish_entry(self.db, claim.id, self.worker, **outcome)
        if drop_zip:
            self.storage.delete(drop_zip)
