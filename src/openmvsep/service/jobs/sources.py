"""A stored file of a job named the way the page names it: `input` (the main input) or `1`..`n` (the outputs in
`files[]` order). The page and the re-run never pass storage keys around: the key is looked up here, from the row."""

from __future__ import annotations

from dataclasses import dataclass

from openmvsep.service.errors import ServiceError
from openmvsep.store.db import utcnow
from openmvsep.store.models import Job

INPUT = "input"


@dataclass(frozen=True)
class StoredSource:
    key: str
    filename: str
    label: str  # "input", or the stem's type ("vocals")


def safe_filename(name: str) -> str:
    """A name to copy a stored file under in scratch: its own, reduced to one harmless path part (the
    extension kept, because the decoder may look at it)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip(". ")
    return "".join(c if c.isalnum() or c in "._- " else "_" for c in base)[-120:] or "input"


def source_names(job: Job) -> list[str]:
    return [INPUT] + [str(n) for n in range(1, len(job.files or []) + 1)]


def stored_source(job: Job, name: str) -> StoredSource:
    """The stored file `name` of `job`; a ServiceError (404) when there is none or its files are gone."""
    if job.files_deleted or job.inputs_deleted or job.expires_at <= utcnow():
        raise ServiceError("The files of this separation have expired.", status=404)
    if name == INPUT:
        main = next(iter(job.inputs.values()))
        return StoredSource(main["key"], main.get("name") or job.hash, INPUT)
    files = job.files or []
    if name.isascii() and name.isdigit() and 1 <= int(name) <= len(files):
        f = files[int(name) - 1]
        return StoredSource(f["key"], f["download"], f["type"])
    raise ServiceError(f"This separation has no file '{name}'.", status=404)
