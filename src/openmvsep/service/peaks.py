"""Waveform peaks of a job's stored files for the result page, computed on demand from the decoded audio
(engine.audio.peaks) and kept in a bounded per-process cache.

A stored file never changes under its key (a re-run writes new keys), so the key names the peaks for good; the
cache holds the last `web_peaks_cache_files` files asked for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from openmvsep.engine.audio import AudioError
from openmvsep.engine.audio.peaks import compute_peaks
from openmvsep.service.errors import ServiceError
from openmvsep.service.jobs.sources import stored_source
from openmvsep.settings import Settings
from openmvsep.store.files import Storage, StoredFileMissing
from openmvsep.store.models import Job

DECIMALS = 4  # enough for a canvas a few thousand pixels tall; keeps the JSON small


class WaveformPeaks:
    def __init__(self, storage: Storage, settings: Settings):
        self.storage = storage
        self.settings = settings
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def for_job(self, job: Job, name: str) -> tuple[str, dict]:
        """(version, body) for file `name` of `job` (sources.py names it); body has `duration` (s), `min` and
        `max` (one value per bucket, in -1..1). The version is the storage key's: it changes only with the file."""
        source = stored_source(job, name)
        with self._lock:
            body = self._cache.get(source.key)
            if body is not None:
                self._cache.move_to_end(source.key)
                return source.key, body
        body = self._compute(source.key)
        with self._lock:
            self._cache[source.key] = body
            while len(self._cache) > max(0, self.settings.web_peaks_cache_files):
                self._cache.popitem(last=False)
        return source.key, body

    def _compute(self, key: str) -> dict:
        try:
            with self.storage.local_file(key) as path:
                peaks = compute_peaks(
                    path,
                    per_second=self.settings.web_peaks_per_second,
                    max_buckets=self.settings.web_peaks_max_buckets,
                )
        except StoredFileMissing:
            raise ServiceError("The files of this separation have expired.", status=404) from None
        except AudioError as e:  # an output that is not audio (MIDI, text)
            raise ServiceError(f"This file has no waveform: {e}", status=404) from None
        return {
            "duration": round(peaks.duration, 4),
            "min": np.round(peaks.mins.astype(np.float64), DECIMALS).tolist(),
            "max": np.round(peaks.maxs.astype(np.float64), DECIMALS).tolist(),
        }
