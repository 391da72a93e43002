"""`openmvsep client separate` on many inputs: several jobs at once, as many as the server lets this account run,
each input resumable from a record beside its outputs, and patient with a server that goes away for a while.

How many at once. MVSep publishes no number (a free account runs one job at a time, a premium one more), and a
create beyond the limit is refused. So a run finds the number out: it starts with one job and tries one more each
time the server takes one (up to `--jobs`); when a create is refused as one job too many, the run settles on the
number it had running then, and the refused input waits for one of those to finish and is sent again. That costs
at most one refused upload per run, and the user never sees the refusal as an error.

Resuming. Beside each input's outputs, `.openmvsep-job.json` says which job makes them (and the idempotency key
of its create, written before the upload). A second run skips inputs whose files are all there and follows a job
that was started instead of paying for another; a job that failed, or that the server no longer knows, is made
again.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from openmvsep.cli import client_exits as exits
from openmvsep.cli.client_progress import Board, Row
from openmvsep.client import JobFailed, JobStatus, MVSepClient, MVSepError, NotFound, TooManyJobs, Unavailable

JOB_RECORD = ".openmvsep-job.json"
T = TypeVar("T")


class Stopped(Exception):
    """The run was interrupted; workers unwind without touching their records."""


# ---- the record beside an input's outputs -----------------------------------------------------------------------


@dataclass
class JobRecord:
    path: Path
    request: dict[str, Any]
    idempotency_key: str = ""
    hash: str | None = None
    complete: bool = False
    files: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, dest: Path, request: dict[str, Any]) -> JobRecord:
        """The record of `dest`; a fresh one when there is none or it was made for other options (another job)."""
        path = dest / JOB_RECORD
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        if not isinstance(saved, dict) or saved.get("request") != request:
            return cls(path, request)
        return cls(
            path,
            request,
            str(saved.get("idempotency_key") or ""),
            saved.get("hash") or None,
            bool(saved.get("complete")),
            [str(f) for f in saved.get("files", [])],
        )

    def all_downloaded(self) -> bool:
        return self.complete and all((self.path.parent / name).is_file() for name in self.files)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body: dict[str, Any] = {"request": self.request, "idempotency_key": self.idempotency_key, "hash": self.hash}
        if self.complete:
            body.update(complete=True, files=self.files)
        partial = self.path.with_name(self.path.name + ".new")
        partial.write_text(json.dumps(body))
        partial.replace(self.path)  # whole or not at all: a run stopped mid-write leaves the last good record

    def before_upload(self) -> None:
        """Write the create's idempotency key down before sending it: a run stopped after the server took the job
        but before its hash was recorded sends the same key again, and a server that honours it answers that job."""
        if not self.idempotency_key:
            self.idempotency_key = uuid.uuid4().hex
        self.save()

    def forget_job(self) -> None:
        """The job failed or is gone: the next create is a new request with a new key."""
        self.hash, self.idempotency_key, self.complete, self.files = None, "", False, []
        self.save()


# ---- how many jobs at once ---------------------------------------------------------------------------------------


class Slots:
    """How many of this run's jobs may be on the server at once (see the module's docstring)."""

    def __init__(self, most: int):
        self.most = most
        self.limit = 1
        self.settled = False  # the server refused one more: `limit` is what it allows
        self.running = 0
        self._cond = threading.Condition()

    def take(self, stop: threading.Event) -> None:
        with self._cond:
            while self.running >= self.limit:
                if stop.is_set():
                    raise Stopped
                self._cond.wait(0.5)
            self.running += 1

    def give(self) -> None:
        with self._cond:
            self.running -= 1
            self._cond.notify_all()

    def confirmed(self) -> None:
        """A job of this run is on the server: until the limit is known, try one more."""
        with self._cond:
            if not self.settled:
                self.limit = min(self.most, max(self.limit, self.running + 1))
                self._cond.notify_all()

    def refused(self) -> int:
        """A slot holder's create was refused as one job too many: its slot is given back and, when other jobs of
        this run are running, the limit becomes their number. Returns that number (0: the jobs that fill the plan
        are not this run's, so only time frees a slot)."""
        with self._cond:
            self.running -= 1
            if self.running:
                self.limit = self.running
                self.settled = True
            self._cond.notify_all()
            return self.running


# ---- patience with a server that went away ------------------------------------------------------------------------


class Patience:
    """Repeat a step while the server is unavailable, until it has been so for `seconds` in a row (any answer in
    between starts the count again)."""

    def __init__(self, seconds: float, nap: Callable[[float], None], row: Row):
        self.seconds = seconds
        self.nap = nap
        self.row = row
        self.down_since: float | None = None
        self.delay = 1.0

    def alive(self) -> None:
        self.down_since, self.delay = None, 1.0

    def run(self, step: Callable[[], T]) -> T:
        while True:
            try:
                result = step()
            except Unavailable as e:
                now = time.monotonic()
                self.down_since = self.down_since or now
                if now - self.down_since >= self.seconds:
                    raise
                self.row.note(f"the server is unavailable ({e.message}); trying again")
                self.nap(self.delay)
                self.delay = min(self.delay * 2, 30.0)
                continue
            self.alive()
            return result


# ---- one input ---------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    server: str
    token: str
    sep_type: int
    options: dict[str, Any]  # add_opt1…3, output_format
    out_dir: Path
    poll: float
    patience: float
    slots: Slots
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def request(self) -> dict[str, Any]:
        return {"sep_type": self.sep_type, **self.options}

    def nap(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped

    def separate(self, source: Path, row: Row) -> int:
        """One input from upload to its files on disk; returns its exit code."""
        dest = self.out_dir / source.stem
        record = JobRecord.load(dest, self.request)
        if record.all_downloaded():
            row.finished("already downloaded, skipped")
            return exits.OK
        patience = Patience(self.patience, self.nap, row)
        with MVSepClient(self.server, token=self.token, sleep=self.nap) as mv:
            try:
                done = self._run_job(mv, source, record, patience, row)

                def downloaded(have: int, total: int | None) -> None:
                    patience.alive()
                    row.downloading(have, total, len(done.files))

                paths = patience.run(lambda: mv.download_all(done, dest, on_bytes=downloaded))
            except JobFailed as e:
                record.forget_job()  # the next run makes a new job
                row.failed(f"the separation failed: {e.message}")
                return exits.FAILED
            except MVSepError as e:
                row.failed(e.message)
                return exits.code_for(e)
        record.complete, record.files = True, [p.name for p in paths]
        record.save()
        row.finished(f"{len(paths)} file(s) in {dest}")
        return exits.OK

    def _run_job(self, mv: MVSepClient, source: Path, record: JobRecord, patience: Patience, row: Row) -> JobStatus:
        """Create the job (or pick up the recorded one) and follow it to done, holding a slot while it is on the
        server."""
        idle = 5.0  # the wait before sending again when the plan is full of jobs that are not this run's
        while True:
            self.slots.take(self.stop)
            holding = True
            try:
                resumed = bool(record.hash)
                if not record.hash:
                    record.before_upload()
                    try:
                        job = patience.run(lambda: self._create(mv, source, record, patience, row))
                    except TooManyJobs:
                        holding = False
                        others = self.slots.refused()
                        row.note("waiting for one of your jobs to finish (the server runs no more at once)")
                        if not others:
                            self.nap(idle)
                            idle = min(idle * 2, 60.0)
                        continue
                    record.hash = job.hash
                    record.save()
                    row.note(f"uploaded: job {job.hash}")
                    self.slots.confirmed()
                try:
                    return patience.run(lambda: self._follow(mv, str(record.hash), patience, row))
                except NotFound:
                    if not resumed:
                        raise
                    row.note("the job of an earlier run is gone from the server; starting it again")
                    record.forget_job()
            finally:
                if holding:
                    self.slots.give()

    def _create(self, mv: MVSepClient, source: Path, record: JobRecord, patience: Patience, row: Row) -> Any:
        def sent(done: int, total: int) -> None:
            patience.alive()
            row.uploading(done, total)

        return mv.create(source, self.sep_type, idempotency_key=record.idempotency_key, on_upload=sent, **self.options)

    def _follow(self, mv: MVSepClient, hash_value: str, patience: Patience, row: Row) -> JobStatus:
        seen_active = False

        def show(status: JobStatus) -> None:
            nonlocal seen_active
            patience.alive()
            if status.active and not seen_active:
                seen_active = True
                self.slots.confirmed()  # a job picked up from an earlier run counts as one the server took
            row.status(status)

        return mv.wait(hash_value, on_progress=show, poll_interval=self.poll)


def separate_all(batch: Batch, files: list[Path], board: Board, jobs: int) -> int:
    """Every input, `jobs` at a time at most; the highest exit code of them all."""
    rows = {source: board.row(source.name) for source in files}  # the bars in the inputs' order
    todo: queue.Queue[Path] = queue.Queue()
    for source in files:
        todo.put(source)
    codes: list[int] = []

    def work() -> None:
        while not batch.stop.is_set():
            try:
                source = todo.get_nowait()
            except queue.Empty:
                return
            try:
                codes.append(batch.separate(source, rows[source]))
            except Stopped:
                return
            except Exception as e:  # a bug: said, and counted, never a silent 0
                rows[source].failed(f"unexpected error: {e!r}")
                codes.append(exits.REFUSED)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(jobs, len(files))))]
    for worker in workers:
        worker.start()
    try:
        while any(w.is_alive() for w in workers):
            for worker in workers:
                worker.join(0.2)
    except KeyboardInterrupt:
        batch.stop.set()
        raise
    return max(codes, default=exits.OK)
