"""URL inputs (MVSep's get-remote stage): queue a download, then turn the downloaded file into a real job."""

from __future__ import annotations

import logging
import secrets
import string

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openmvsep.algorithms.recipes import RECIPES
from openmvsep.net import REMOTE_TYPES, RemoteFetchError, direct_url
from openmvsep.service.errors import ServiceError
from openmvsep.service.idempotency import Once
from openmvsep.service.jobs.intake import Intake, JobRequest, Upload
from openmvsep.service.jobs.pricing import plan_of
from openmvsep.store.db import utcnow
from openmvsep.store.models import Job, RemoteJob, User
from openmvsep.store.status import RemoteStatus

log = logging.getLogger("openmvsep.jobs")
SHORT_HASH_ALPHABET = string.ascii_letters + string.digits


class RemoteIntake:
    def __init__(self, intake: Intake):
        self.intake = intake
        self.db = intake.db

    def create(
        self, token: str | None, req: JobRequest, url: str, remote_type: str, once: Once | None = None
    ) -> RemoteJob:
        """Queue the download. `once`: the request's idempotency key, checked and recorded in this transaction."""
        remote_type = (remote_type or "direct").strip().lower()
        if remote_type not in REMOTE_TYPES:
            raise ServiceError(f"remote_type must be one of {', '.join(REMOTE_TYPES)}")
        if len(url) > 4096:
            raise ServiceError("The url is too long")
        try:
            direct_url(url, remote_type)
        except RemoteFetchError as e:
            raise ServiceError(str(e)) from None
        self.intake.check_request(req, self.intake.caller_readonly(token))
        self.intake.check_webhook(req)
        if RECIPES[req.sep_type].inputs != ("audiofile",):
            raise ServiceError("This algorithm needs uploaded files; a url cannot be used")
        with self.db.session() as s:
            user = self.intake.caller(s, token)
            if once is not None:  # before the limits: a twin that got in first must answer, not be refused
                once.check(s)
            self.intake.check_limits(s, user)
            now = utcnow()
            remote = RemoteJob(
                short_hash=self._short_hash(s),
                user_id=user.id if user else None,
                plan=plan_of(user),
                url=url,
                remote_type=remote_type,
                params={
                    "sep_type": req.sep_type,
                    "options_form": dict(req.options_form),
                    "output_format": req.output_format,
                    "is_demo": req.is_demo,
                    "webhook_url": req.webhook_url,
                    "link_base": req.link_base,
                },
                status=RemoteStatus.WAITING,
                created_at=now,
                updated_at=now,
            )
            s.add(remote)
            if once is not None:
                once.record(s, remote)
        log.info("download %s: queued (%s)", remote.short_hash, remote_type)
        return remote

    @staticmethod
    def _short_hash(s: Session) -> str:
        while True:
            candidate = "".join(secrets.choice(SHORT_HASH_ALPHABET) for _ in range(16))
            if s.scalar(select(RemoteJob.id).where(RemoteJob.short_hash == candidate)) is None:
                return candidate

    def finish(self, remote_id: int, upload: Upload) -> Job:
        """The remote stage downloaded the file: create the real job for the remote job's owner."""
        with self.db.reader() as s:
            remote = s.get(RemoteJob, remote_id)
            assert remote is not None  # the id of a claimed download; remote_jobs rows are never deleted
            params = dict(remote.params)
            user_id = remote.user_id
            owner = s.get(User, user_id) if user_id else None
        req = JobRequest(
            params["sep_type"],
            params["options_form"],
            params["output_format"],
            params["is_demo"],
            params.get("webhook_url"),
            params.get("link_base"),
        )
        algo, choice = self.intake.check_request(req, owner)
        info = self.intake.probe(upload)
        upload = upload.hashed()  # outside the transaction (result reuse compares contents)

        def write(s: Session, stored: list[str]) -> Job:
            remote = s.get(RemoteJob, remote_id)
            assert remote is not None  # read above; remote_jobs rows are never deleted
            user = s.get(User, user_id) if user_id else None
            job = self.intake.insert_job(s, user, req, algo, choice, {"audiofile": upload}, {"audiofile": info}, stored)
            remote.status, remote.job_hash, remote.updated_at = RemoteStatus.DONE, job.hash, utcnow()
            return job

        return self.intake.insert_and_commit(write)

    def state(self, short_hash: str) -> tuple[RemoteJob, int, int] | None:
        """(the remote job, downloads ahead of it, downloads waiting), or None when there is none."""
        with self.db.reader() as s:
            remote = s.scalar(select(RemoteJob).where(RemoteJob.short_hash == short_hash)) if short_hash else None
            if remote is None:
                return None
            ahead = (
                s.scalar(
                    select(func.count())
                    .select_from(RemoteJob)
                    .where(RemoteJob.status == RemoteStatus.WAITING, RemoteJob.id < remote.id)
                )
                or 0
            )
            waiting = (
                s.scalar(select(func.count()).select_from(RemoteJob).where(RemoteJob.status == RemoteStatus.WAITING))
                or 0
            )
            return remote, int(ahead), int(waiting)
