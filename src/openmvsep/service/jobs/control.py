"""What an owner may do to a job after it was created: cancel it while it waits, delete it and its files."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openmvsep.service import accounts
from openmvsep.service.errors import ServiceError
from openmvsep.store.db import Database, utcnow
from openmvsep.store.files import Storage
from openmvsep.store.models import Job, User, WorkItem
from openmvsep.store.status import JOB_ACTIVE, JobStatus, WorkStatus

log = logging.getLogger("openmvsep.jobs")
NOT_FOUND = "File or File Hash not found"


class JobControl:
    def __init__(self, db: Database, storage: Storage):
        self.db, self.storage = db, storage

    def _own_job(self, s: Session, user: User, hash_value: str) -> Job:
        job = s.scalar(select(Job).where(Job.hash == hash_value)) if hash_value else None
        if job is None or job.user_id != user.id or job.files_deleted:
            raise ServiceError(NOT_FOUND)
        return job

    def cancel(self, token: str | None, hash_value: str) -> None:
        with self.db.session() as s:
            user = accounts.require_user(s, token, status=400)
            job = self._own_job(s, user, hash_value)
            self._cancel_waiting(s, job, user)
            keys = [i["key"] for i in job.inputs.values()]
        for key in keys:  # the inputs of a job that will never run are of no use
            self.storage.delete(key)

    def _cancel_waiting(self, s: Session, job: Job, user: User) -> None:
        if job.status != JobStatus.WAITING:
            raise ServiceError(f"Only a waiting separation can be cancelled; this one is {job.status}")
        started = s.scalar(
            select(func.count())
            .select_from(WorkItem)
            .where(WorkItem.job_id == job.id, WorkItem.status != WorkStatus.WAITING)
        )
        if started:
            raise ServiceError("The separation has already started and cannot be cancelled")
        for item in s.scalars(select(WorkItem).where(WorkItem.job_id == job.id)):
            s.delete(item)
        if job.credits_charged:
            accounts.change_credits(s, user, job.credits_charged, "refund", job_id=job.id)
        job.status, job.message, job.updated_at = JobStatus.CANCELLED, "Cancelled by the user", utcnow()
        job.finished_at = utcnow()
        log.info("job %s: cancelled by its owner (%s credit(s) refunded)", job.hash, job.credits_charged)

    def delete(self, token: str | None, hash_value: str) -> None:
        with self.db.session() as s:
            user = accounts.require_user(s, token, status=400)
            job = self._own_job(s, user, hash_value)
            if job.status == JobStatus.WAITING:
                self._cancel_waiting(s, job, user)
            elif job.status in JOB_ACTIVE:
                raise ServiceError("The separation is being processed; cancel is not possible and delete must wait")
            job.files_deleted, job.expires_at, job.updated_at = True, utcnow(), utcnow()
            keys = job.storage_keys()
        for key in keys:
            self.storage.delete(key)
        self.storage.delete_prefix(f"work/{job.id}")
