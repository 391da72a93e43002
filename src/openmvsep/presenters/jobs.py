"""Separation jobs on the wire: `separation/get`, `get-remote`, the create answers, history, demo and queue."""

from __future__ import annotations

from math import ceil, floor
from typing import Any

from openmvsep.algorithms.recipes import mega_substitute_note
from openmvsep.engine.audio import FORMATS
from openmvsep.engine.documents import DOCUMENT_KINDS
from openmvsep.presenters.links import Links
from openmvsep.presenters.media_tags import getid3_tags
from openmvsep.service.accounts import fmt_datetime
from openmvsep.service.catalog import Catalog
from openmvsep.service.jobs import NOT_FOUND, QueueView
from openmvsep.service.jobs.pricing import PLAN_NAMES, PREMIUM, REGISTERED, UNREGISTERED
from openmvsep.service.jobs.progress import percent
from openmvsep.service.naming import human_size, split_name
from openmvsep.store.db import utcnow
from openmvsep.store.models import Job, RemoteJob
from openmvsep.store.status import JobStatus, RemoteStatus

NOT_FOUND_BODY = {"success": False, "status": "not_found", "data": {"message": NOT_FOUND}}


def output_format_label(format_id: int, files: list[dict]) -> str:
    """`output_format` of a done job: the label of the audio format asked for, unless no output is audio (a
    transcriber's MIDI, a transcript): then the labels of the documents' kinds, e.g. "mid (MIDI)". Clients that
    take the text before " (" as the files' extension then find the right one."""
    kinds = []
    for f in files:
        kind = DOCUMENT_KINDS.get(split_name(f["download"])[1])
        if kind is None:
            return FORMATS[format_id].label
        if kind.label not in kinds:
            kinds.append(kind.label)
    return ", ".join(kinds) or FORMATS[format_id].label


class JobPresenter:
    def __init__(self, catalog: Catalog, links: Links):
        self.catalog, self.links = catalog, links

    def at(self, base: str | None) -> JobPresenter:
        """This presenter for a request that reached the server at `base` (Links.at): its links follow it."""
        return JobPresenter(self.catalog, self.links.at(base))

    # ---------------------------------------------------------------- create answers

    def created(self, job: Job) -> dict:
        return {"success": True, "data": {"link": self.links.status(job.hash), "hash": job.hash}}

    def remote_created(self, remote: RemoteJob) -> dict:
        return {
            "success": True,
            "data": {
                "link": self.links.url(f"/api/separation/get-remote?hash={remote.short_hash}"),
                "hash": remote.short_hash,
            },
        }

    # ---------------------------------------------------------------- get

    def status(self, row: Any | None, eta_seconds: float | None = None) -> dict:
        """The `separation/get` body for a row of JobQueries.status_row (None: not found). `eta_seconds`: the time
        left (service/jobs/eta.py), None when nothing measured tells it."""
        if row is None:
            return dict(NOT_FOUND_BODY)
        status = row.status
        if status == JobStatus.CANCELLED:
            return {"success": True, "status": "failed", "data": {"message": "The separation was cancelled"}}
        if status == JobStatus.FAILED:
            return {"success": True, "status": "failed", "data": {"message": row.message or "Separation failed"}}
        if status == JobStatus.DONE:
            return {"success": True, "status": "done", "data": {**self._done_data(row), **self._progress(row, 0.0)}}
        # Exact counts: waiting jobs of the same plan, and this job's place in the order workers take them
        # (higher plans first, then first come first served).
        position = {"queue_count": int(row.queue_count), "current_order": int(row.ahead) + 1}
        extra = self._progress(row, eta_seconds)
        if status == JobStatus.WAITING:
            return {"success": True, "status": "waiting", "data": {**position, **extra}}
        if status == JobStatus.PROCESSING:
            return {
                "success": True,
                "status": "processing",
                "data": {"message": "Your file is being processed", **extra},
            }
        if status == JobStatus.DISTRIBUTING:
            data = {**position, "finished_chunks": row.finished_chunks, "all_chunks": row.all_chunks, **extra}
            return {"success": True, "status": "distributing", "data": data}
        return {
            "success": True,
            "status": "merging",
            "data": {
                "message": "Merging the separated chunks",
                "finished_chunks": row.finished_chunks,
                "all_chunks": row.all_chunks,
                **extra,
            },
        }

    @staticmethod
    def _progress(row: Any, eta_seconds: float | None) -> dict:
        """openmvsep's additive keys (MVSep's clients ignore keys they do not know): `progress`, a whole percentage
        that never goes back and is 100 only when done, and `eta_seconds`, whole seconds left or null."""
        return {
            "progress": percent(row.status, row.progress, row.finished_chunks, row.all_chunks),
            "eta_seconds": None if eta_seconds is None else ceil(max(0.0, eta_seconds)),
        }

    def _done_data(self, job: Any) -> dict:
        algo = self.catalog.get(job.sep_type)
        main = next(iter(job.inputs.values()))
        data: dict = {
            "hash": job.hash,
            "algorithm": algo.name if algo else str(job.sep_type),
            "algorithm_description": self._description(job),
            "size": human_size(main["size"]),
            "output_format": output_format_label(job.output_format, job.files or []),
        }
        if main.get("media"):
            data["tags"] = getid3_tags(main["media"])
        elif main.get("tags"):  # a row stored before inputs kept `media`
            data["tags"] = main["tags"]
        stem, ext = split_name(job.hash)
        host = self.links.host or "openmvsep"  # no port: ':' breaks names
        input_download = f"{stem}_[{host}]" + (f".{ext}" if ext else "")
        data["input_file"] = {
            "url": self.links.file(main["key"], input_download),
            "size": human_size(main["size"]),
            "download": input_download,
        }
        data["files"] = [
            {
                "type": f["type"],
                "url": self.links.file(f["key"], f["download"]),
                "download": f["download"],
                "size": human_size(f["bytes"]),
                "bytes": f["bytes"],
            }
            for f in (job.files or [])
        ]
        data["date"] = fmt_datetime(job.finished_at or job.updated_at)
        if job.substitutions:
            data["substitutions"] = self._substitutions(job)
        if job.reused_from is not None:  # an additive key, only on jobs done with copies of an earlier job's outputs
            data["reused"] = True
        return data

    def _substitutions(self, job: Any) -> dict[str, dict[str, str]]:
        """add_optN -> {requested, used} (an additive key: present only when a substitute ran)."""
        return {name: {"requested": s["requested"], "used": s["used"]} for name, s in job.substitutions.items()}

    def _description(self, job: Any) -> str:
        """The catalog's description; when a substitute ran, it first names the model that did (an option served in
        place of the one asked for, or a public model standing in for MVSep's private one)."""
        algo = self.catalog.get(job.sep_type)
        if algo is None:
            return ""
        ran = []
        for name, swap in (job.substitutions or {}).items():
            f = algo.field(name)
            if f is None:
                continue
            used = f.options.get(swap["used"], swap["used"])
            asked = f.options.get(swap["requested"], swap["requested"])
            ran.append(f"{f.text or f.server_key}: {used} (instead of {asked}, which this server cannot run)")
        notes = ["Ran on this server with " + "; ".join(ran) + "."] if ran else []
        stand_in = mega_substitute_note(job.sep_type)  # whatever option was asked, its recipe runs the stand-in
        if stand_in is not None:
            notes.append(stand_in)
        return "\n\n".join([*notes, algo.description])

    def remote_status(self, state: tuple[RemoteJob, int, int] | None) -> dict:
        """The `get-remote` body for RemoteIntake.state."""
        if state is None:
            return dict(NOT_FOUND_BODY)
        remote, ahead, waiting = state
        if remote.status == RemoteStatus.DONE:
            assert remote.job_hash is not None  # set in the same write that marks the download done
            return {
                "success": True,
                "status": "done",
                "data": {"hash": remote.job_hash, "link": self.links.status(remote.job_hash)},
            }
        if remote.status == RemoteStatus.FAILED:
            return {"success": True, "status": "failed", "data": {"message": remote.message or "Download failed"}}
        if remote.status == RemoteStatus.PROCESSING:
            return {
                "success": False,
                "status": "processing",
                "data": {"message": "Your audio file is being downloaded, please wait a while..."},
            }
        return {"success": True, "status": "waiting", "data": {"queue_count": waiting, "current_order": ahead + 1}}

    # ---------------------------------------------------------------- lists

    def algorithm_summary(self, sep_type: int, *, with_group: bool) -> dict:
        algo = self.catalog.get(sep_type)
        raw: dict[str, Any] = (
            algo.raw
            if algo
            else {
                "name": str(sep_type),
                "algorithm_group_id": 0,
                "orientation": 0,
                "render_id": sep_type,
                "order_id": 0,
                "created_at": None,
                "updated_at": None,
            }
        )
        out = {
            k: raw.get(k)
            for k in ("name", "algorithm_group_id", "orientation", "render_id", "order_id", "created_at", "updated_at")
        }
        if with_group:
            out["algorithm_group"] = dict(
                raw.get("algorithm_group")
                or {"id": raw.get("algorithm_group_id"), "name": "", "created_at": None, "updated_at": None}
            )
        return out

    def history(self, jobs: list[Job]) -> list[dict]:
        now = utcnow()
        items = []
        for job in jobs:
            # A cancelled or failed job was refunded and its files are gone: as MVSep reports a job that no
            # longer exists (job_exists false, credits null).
            ended_without_result = job.status in (JobStatus.CANCELLED, JobStatus.FAILED)
            exists = not job.files_deleted and job.expires_at > now and not ended_without_result
            items.append(
                {
                    "id": job.id,
                    "hash": job.hash,
                    "created_at": fmt_datetime(job.created_at),
                    "updated_at": fmt_datetime(job.updated_at),
                    "job_exists": exists,
                    "credits": job.credits_charged if exists else None,
                    "time_left": floor((job.expires_at - now).total_seconds() / 3600),
                    "algorithm": self.algorithm_summary(job.sep_type, with_group=True),
                    **({"substitutions": self._substitutions(job)} if job.substitutions else {}),
                }
            )
        return items

    def demo(self, jobs: list[Job]) -> list[dict]:
        out = []
        for job in jobs:
            main = next(iter(job.inputs.values()))
            out.append(
                {
                    "hash": job.hash,
                    "date": job.created_at.strftime("%Y-%m-%d %H:%M"),
                    "input_audio": self.links.url(f"/storage/{main['key']}"),
                    "size": human_size(main["size"]),
                    "algorithm": self.algorithm_summary(job.sep_type, with_group=False),
                }
            )
        return out

    @staticmethod
    def current_queue(jobs: list[Job]) -> list[dict]:
        return [
            {"hash": j.hash, "status": j.status, "sep_type": j.sep_type, "created_at": fmt_datetime(j.created_at)}
            for j in jobs
        ]

    @staticmethod
    def queue(view: QueueView) -> dict:
        counts = view.waiting_by_plan
        body: dict = {
            "success": True,
            "queue": {
                "in_process": view.in_process,
                "premium": counts.get(PREMIUM, 0),
                "registered": counts.get(REGISTERED, 0),
                "unregistered": counts.get(UNREGISTERED, 0),
            },
        }
        if view.plan is not None:
            mine = {"plan": PLAN_NAMES[view.plan], "queue": counts.get(view.plan, 0)}
            body["plan"] = mine
            body["current"] = dict(mine)
            if view.used_today is not None:
                body["free_separations"] = {
                    "left": max(0, view.daily_free_jobs - view.used_today),
                    "max": view.daily_free_jobs,
                }
        return body
