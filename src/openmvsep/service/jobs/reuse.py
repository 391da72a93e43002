"""Result reuse: a separation asked for again is done at once, with no worker.

A new job whose inputs (by content: sha256), sep_type, options as they run and output format equal those of a
finished job whose files still exist is done the moment it is created: its outputs are copies of that job's,
under its own names (its hash, its input's file name, its owner's long or short names), it is charged per
`reuse_charge` (its usual price, or nothing), and `reused_from` names the job it came from (the `get` answer
carries the additive key `reused: true`). Its files expire with its own retention time.

Copies, not links to the first job's keys. Each job keeps owning every file its row names, as before: retention,
delete, the failed-job sweep and the janitor delete a job's keys without asking whether another job still needs
them, so neither job's expiry or deletion can take the other's files, and no reference count has to be right in
every path that deletes. What a copy costs depends on the store: on a local disk it is a hard link (no second
copy of the bytes; stored files are never rewritten in place, so the names cannot drift apart), in S3 a copy
inside the store (no byte passes through this server; the store keeps a second object until that job's files
expire). A first job whose files go while they are being copied is no longer a source: the copies made so far
are removed and the new job is queued like any other.

The key holds `options` as they run (a substitute model included), so an option served by another model is not
a match; it does not hold the weights file, so a checkpoint replaced under the same option keeps answering with
the earlier outputs until they expire. With `reuse_results=all`, a job of one account may be served from
another's: the second user gets exactly the bytes a worker would have made for them, and learns only that the
same file was separated the same way within the retention time; `own` keeps reuse within one account.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from openmvsep.algorithms.choice import Choice
from openmvsep.service.naming import output_key, output_names, split_name, storage_token
from openmvsep.settings import Settings
from openmvsep.store.db import utcnow
from openmvsep.store.files import Storage, StoredFileMissing
from openmvsep.store.models import Job, User
from openmvsep.store.status import JobStatus


def result_key(sep_type: int, options: Mapping[str, str], output_format: int, inputs: Mapping[str, str]) -> str:
    """sha256 of what decides a job's outputs: the inputs' contents by role, the algorithm, the options that run
    and the output format."""
    canonical = {"sep_type": sep_type, "options": dict(options), "output_format": output_format, "inputs": dict(inputs)}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ResultReuse:
    def __init__(self, storage: Storage, settings: Settings):
        self.storage, self.settings = storage, settings

    def source(self, s: Session, key: str, user: User | None) -> Job | None:
        """The newest finished job with this key whose files are still there (and, with `own`, the caller's)."""
        scope = self.settings.reuse_results
        if scope == "off" or (scope == "own" and user is None):
            return None
        query = select(Job).where(
            Job.result_key == key,
            Job.status == JobStatus.DONE,
            Job.files_deleted.is_(False),
            Job.expires_at > utcnow(),
        )
        if scope == "own":
            assert user is not None  # returned above
            query = query.where(Job.user_id == user.id)
        return s.scalar(query.order_by(Job.id.desc()).limit(1))

    def copy_outputs(
        self,
        source: Job,
        job: Job,
        algorithm_name: str,
        choice: Choice,
        stored: list[str],
    ) -> list[dict] | None:
        """`source`'s outputs copied under `job`'s own names: its file records, with the new keys added to
        `stored` (removed by the caller if its transaction does not commit). None, with nothing left behind, when a
        file of `source` is gone or its record predates the stem names a copy is named by."""
        main = next(iter(job.inputs.values()))
        token = storage_token()  # a folder of the job's own, as a worker would make
        made: list[str] = []
        files = []
        try:
            for record in source.files or []:
                stem = record.get("stem")
                if stem is None:
                    raise StoredFileMissing("an output record without its stem")
                storage_name, download = output_names(
                    job.hash,
                    main["name"],
                    algorithm_name,
                    choice,
                    stem,
                    split_name(record["key"])[1],  # the audio format's or a document's own extension
                    job.long_filenames,
                )
                key = output_key(token, storage_name)
                size = self.storage.copy(record["key"], key)
                made.append(key)
                files.append({"type": record["type"], "key": key, "download": download, "bytes": size, "stem": stem})
        except BaseException as e:
            for key in made:
                self.storage.delete(key)
            if isinstance(e, StoredFileMissing):
                return None
            raise
        stored.extend(made)
        return files or None
