"""Separation jobs, by concern: intake (checks and the one write), pricing, URL inputs, cancel/delete, and the
reads the views need. `JobService` is what the entry points hold; the parts are its attributes."""

from __future__ import annotations

import shutil
from collections.abc import Callable

from openmvsep.engine.weights import WeightsRegistry
from openmvsep.service.catalog import Catalog
from openmvsep.service.errors import ServiceError
from openmvsep.service.idempotency import Once
from openmvsep.service.jobs.control import NOT_FOUND, JobControl
from openmvsep.service.jobs.eta import Estimates, Eta
from openmvsep.service.jobs.intake import Intake, JobRequest, Upload, parse_output_format, parse_sep_type
from openmvsep.service.jobs.pricing import credits_for, is_premium
from openmvsep.service.jobs.queries import JobQueries, QueueView
from openmvsep.service.jobs.remote import RemoteIntake
from openmvsep.service.jobs.sources import StoredSource, safe_filename, stored_source
from openmvsep.service.jobs.visibility import PRIVATE_MESSAGE, may_view
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage, StoredFileMissing
from openmvsep.store.models import Job, RemoteJob, User
from openmvsep.store.status import JobStatus

__all__ = [
    "NOT_FOUND",
    "PRIVATE_MESSAGE",
    "Eta",
    "JobRequest",
    "JobService",
    "QueueView",
    "Upload",
    "credits_for",
    "is_premium",
    "parse_output_format",
    "parse_sep_type",
]


class JobService:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        settings: Settings,
        catalog: Catalog,
        notify: Callable[[], None] = lambda: None,
        registry: WeightsRegistry | None = None,
    ):
        self.notify = notify  # wakes the executor when new work is queued
        self.intake = Intake(db, storage, settings, catalog, registry)
        self.remote = RemoteIntake(self.intake)
        self.control = JobControl(db, storage)
        self.queries = JobQueries(db, settings.free_daily_jobs)
        self.eta = Estimates(db, settings.eta_sample_jobs, settings.eta_cache_seconds, settings.eta_queue_cache_seconds)
        self.private_results = settings.private_results

    def may_view(self, job: Job | RemoteJob, viewer: User | None) -> bool:
        """Whether the web page shows this job (or link download) to `viewer` (None: not logged in)."""
        return may_view(job, viewer, self.private_results)

    def create(self, token: str | None, req: JobRequest, uploads: dict[str, Upload], once: Once | None = None) -> Job:
        """A new job (`once`: the request's idempotency key, service/idempotency.py)."""
        job = self.intake.create(token, req, uploads, once)
        if job.status == JobStatus.WAITING:  # a reused result is done already: no worker to wake
            self.notify()
        return job

    def create_remote(
        self, token: str | None, req: JobRequest, url: str, remote_type: str, once: Once | None = None
    ) -> RemoteJob:
        remote = self.remote.create(token, req, url, remote_type, once)
        self.notify()
        return remote

    def own_source(self, token: str | None, source_hash: str, source: str) -> StoredSource:
        """File `source` (sources.py's names) of the caller's own job `source_hash`; another user's job, or one
        made without an account, is "not found" (a hash alone proves nothing)."""
        user = self.intake.caller_readonly(token)
        job = self.queries.job(source_hash)
        if user is None or job is None or job.user_id != user.id:
            raise ServiceError("That separation was not found among yours.", status=404)
        return stored_source(job, source)

    def create_from_stored(self, token: str | None, req: JobRequest, source_hash: str, source: str) -> Job:
        """A new job whose input is a file this server already stores: the input or an output (`source`, as
        sources.py names them) of the caller's own job `source_hash`. Nothing is uploaded again; the rules, price
        and limits are create's, applied to a copy of the stored file. Another user's job is "not found"."""
        stored = self.own_source(token, source_hash, source)
        storage = self.intake.storage
        scratch = storage.scratch_dir()
        try:
            copy = scratch / safe_filename(stored.filename)
            try:
                with storage.local_file(stored.key) as path:
                    shutil.copyfile(path, copy)
            except StoredFileMissing:
                raise ServiceError("The files of this separation have expired.", status=404) from None
            return self.create(token, req, {"audiofile": Upload(copy, stored.filename)})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def finish_remote(self, remote_id: int, upload: Upload) -> Job:
        job = self.remote.finish(remote_id, upload)
        self.notify()
        return job

    def cancel(self, token: str | None, hash_value: str) -> None:
        self.control.cancel(token, hash_value)

    def delete(self, token: str | None, hash_value: str) -> None:
        self.control.delete(token, hash_value)
