"""URL inputs in a worker: download the file (SSRF-guarded), then hand it to intake as a real job."""

from __future__ import annotations

import logging
import shutil

from openmvsep.errors import INTERNAL, UserError
from openmvsep.net import Pace, fetch
from openmvsep.service import lifecycle
from openmvsep.service.jobs import JobService, Upload
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage
from openmvsep.store.models import RemoteJob

log = logging.getLogger("openmvsep.worker")


class DownloadWork:
    def __init__(self, settings: Settings, db: Database, storage: Storage, jobs: JobService):
        self.settings, self.db, self.storage, self.jobs = settings, db, storage, jobs

    def run(self, claim: lifecycle.Claim) -> None:
        with self.db.reader() as s:
            remote = s.get(RemoteJob, claim.id)
            assert remote is not None  # the id comes from a claim, and remote_jobs rows are never deleted
            url, remote_type = remote.url, remote.remote_type
        scratch = self.storage.scratch_dir()
        try:
            fetched = fetch(
                url,
                remote_type,
                scratch,
                max_bytes=self.settings.remote_max_bytes,
                timeout=self.settings.remote_timeout_seconds,
                allow_private=self.settings.remote_allow_private,
                pace=Pace(
                    self.settings.remote_deadline_seconds,
                    self.settings.remote_min_bytes_per_second,
                    self.settings.remote_rate_window_seconds,
                ),
            )
            self.jobs.finish_remote(claim.id, Upload(fetched.path, fetched.filename))
        except UserError as e:
            lifecycle.fail_download(self.db, claim.id, e.message)
        except Exception:
            log.exception("remote download %s failed", claim.id)
            lifecycle.fail_download(self.db, claim.id, f"Download failed: {INTERNAL}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
