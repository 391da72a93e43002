"""Scoring Quality Checker entries in a worker: the SDR claim, then (at lower priority) the metrics claim.

Results are written in one transaction that also checks the entry is still ours: an entry deleted while it
was scored, or taken back after a lost lease, ignores a late result.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete

from openmvsep.quality.scoring import Scores, score_metrics, score_sdr
from openmvsep.quality.submission import SubmissionError, open_submission
from openmvsep.service.quality import dataset_of, submission_limits
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.files import Storage
from openmvsep.store.models import QcDataset, QcEntry, QcScore

log = logging.getLogger("openmvsep.quality")


def run_quality_claim(db: Database, storage: Storage, settings: Settings, kind: str, entry_id: int,
                      worker: str) -> None:
    with db.reader() as s:
        entry = s.get(QcEntry, entry_id)
        dataset_row = s.get(QcDataset, entry.dataset_type) if entry else None
    if entry is None or dataset_row is None or entry.zip_key is None:
        return
    dataset = dataset_of(dataset_row)
    try:
        with storage.local_file(entry.zip_key) as zip_path:  # S3: a local copy for this claim
            submission = open_submission(zip_path, dataset, submission_limits(settings))
            if kind == "qc_sdr":
                scores = score_sdr(dataset, submission, threads=settings.qc_threads)
                final = not settings.qc_secondary_metrics
            else:
                scores = Scores(tuple(entry.stems), entry.tracks or {}, list(entry.warnings or []))
                score_metrics(dataset, submission, scores)
                final = True
    except SubmissionError as e:
        _finish(db, storage, entry_id, worker, failed=str(e))
        return
    except Exception as e:  # a bug or a broken file: the entry says so, the worker goes on
        log.exception("quality entry %s failed", entry_id)
        if kind == "qc_sdr":
            _finish(db, storage, entry_id, worker, failed=f"Scoring failed: {type(e).__name__}: {e}")
        else:  # the leaderboard numbers stand; only the extra metrics are missing
            _finish(db, storage, entry_id, worker, note=f"The secondary metrics failed: {type(e).__name__}: {e}")
        return
    _finish(db, storage, entry_id, worker, scores=scores, final=final)


def _finish(db: Database, storage: Storage, entry_id: int, worker: str, *, scores: Scores | None = None,
            final: bool = True, failed: str | None = None, note: str | None = None) -> None:
    drop_zip = None
    with db.session() as s:
        entry = s.get(QcEntry, entry_id)
        if entry is None or entry.worker != worker or entry.status not in ("scoring", "measuring"):
            return  # deleted, or taken back after a lost lease: this result is late
        now = utcnow()
        entry.worker, entry.lease_until, entry.updated_at = None, None, now
        if failed is not None:
            entry.status, entry.msg = "failed", failed
        elif note is not None:
            entry.status = "done"
            entry.warnings = [*(entry.warnings or []), note]
        else:
            means = scores.means()
            entry.metrics, entry.tracks, entry.warnings = means, scores.tracks, scores.warnings
            entry.status, entry.msg, entry.attempts = ("done" if final else "scored"), "OK", 0
            entry.scored_at = entry.scored_at or now
            s.execute(delete(QcScore).where(QcScore.entry_id == entry.id))
            s.add_all(QcScore(entry_id=entry.id, stem=stem, metric=metric, value=value)
                      for stem, values in means.items() for metric, value in values.items())
        if entry.status in ("done", "failed"):
            drop_zip, entry.zip_key = entry.zip_key, None
    if drop_zip:
        storage.delete(drop_zip)
