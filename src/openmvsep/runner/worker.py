"""A worker: claims one piece of work at a time and runs it through the engine.

Every executor runs the same `Worker.run_claim`; only how workers are started differs.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from openmvsep.engine import audio
from openmvsep.engine.cache import ModelCache
from openmvsep.engine.recipes import RECIPES, runnable_map
from openmvsep.engine.runtime import ModelUnavailable, Runtime
from openmvsep.engine.joins import Chunk, join_chunks
from openmvsep.runner import queue
from openmvsep.runner.quality_work import run_quality_claim
from openmvsep.service.catalog import Catalog
from openmvsep.service.jobs import JobService, Upload
from openmvsep.service.naming import output_names
from openmvsep.service.webhooks import send_webhook
from openmvsep.settings import Settings
from openmvsep.store.db import Database, utcnow
from openmvsep.store.files import Storage
from openmvsep.store.storage import make_storage
from openmvsep.store.models import Job, WorkItem

log = logging.getLogger("openmvsep.worker")


def engine_runtime(settings: Settings) -> Runtime:
    """The engine as this server's settings configure it (weights under <data dir>/weights)."""
    return Runtime.for_data_dir(settings.data_dir, cache=ModelCache(settings.models_kept_loaded),
                                device=settings.device, precision=settings.precision,
                                batch_size=settings.batch_size, auto_download=settings.auto_download,
                                compile=settings.compile_models)


class JobFailure(Exception):
    """A job that cannot succeed however often it is retried; the message is shown to the user."""


class Worker:
    def __init__(self, settings: Settings, name: str, *, db: Database | None = None,
                 storage: Storage | None = None, catalog: Catalog | None = None):
        self.settings = settings
        self.name = name
        self.db = db or Database(settings.effective_database_url)
        self.storage = storage or make_storage(settings)
        self.runtime = engine_runtime(settings)
        self.catalog = catalog or Catalog.load(runnable_map(self.runtime))
        self.jobs = JobService(self.db, self.storage, settings, self.catalog, registry=self.runtime.registry)

    # ---------------------------------------------------------------- loop

    def run_next(self) -> bool:
        """Claim and run one piece of work; False when there was none."""
        claim = queue.claim_next(self.db, self.name, self.settings.lease_seconds)
        if claim is None:
            return False
        self.run_claim(claim)
        return True

    def run_claim(self, claim: queue.Claim) -> None:
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claim, stop), daemon=True)
        beat.start()
        try:
            if claim.kind == "remote":
                self._run_remote(claim.id)
            elif claim.kind in queue.QC_PHASES:
                run_quality_claim(self.db, self.storage, self.settings, claim.kind, claim.id, self.name)
            else:
                self._run_item(claim)
        finally:
            stop.set()
            beat.join()

    def _heartbeat(self, claim: queue.Claim, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_seconds):
            try:
                queue.extend_lease(self.db, claim, self.name, self.settings.lease_seconds)
            except Exception:  # a missed beat only shortens the lease; the next one retries
                log.exception("heartbeat failed")

    # ---------------------------------------------------------------- work items

    def _run_item(self, claim: queue.Claim) -> None:
        with self.db.reader() as s:
            item = s.get(WorkItem, claim.id)
            job = s.get(Job, claim.job_id)
        scratch = self.storage.scratch_dir()
        try:
            if item.kind == "whole":
                stems, rate = self._separate(job, item)
                files = self._encode_outputs(job, ((name, [data]) for name, data in stems.items()), rate, scratch)
                self._complete(job, item, files)
            elif item.kind == "chunk":
                stems, rate = self._separate(job, item)
                self._store_chunk(job, item, stems, scratch)
                self._complete(job, item, None)
            else:
                files = self._merge(job, scratch)
                self._complete(job, item, files)
        except (JobFailure, audio.AudioError) as e:  # the same input would fail again: no retry
            self._fail(job, item, str(e))
        except Exception as e:  # an engine, storage or machine error: another attempt (maybe elsewhere) may pass
            log.exception("job %s: work item %s failed (attempt %s)", job.hash, item.id, claim.attempts)
            self._retry_or_fail(job, item, f"{type(e).__name__}: {e}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _separate(self, job: Job, item: WorkItem) -> tuple[dict[str, np.ndarray], int]:
        recipe = RECIPES.get(job.sep_type)
        if recipe is None:
            raise JobFailure(f"Separation type {job.sep_type} cannot run on this server")
        rate = self._work_rate(job)
        start, duration = 0.0, None
        if item.kind == "chunk":
            start = item.start_frame / rate
            last = item.index == job.all_chunks - 1
            duration = None if last else (item.end_frame - item.start_frame) / rate
        inputs = {}
        for role in recipe.inputs:
            with self.storage.local_file(job.inputs[role]["key"]) as path:
                inputs[role], _ = audio.read_audio(path, sample_rate=rate, start=start, duration=duration)
        try:
            stems, out_rate = recipe.run(inputs, rate, dict(job.options), self.runtime)
        except ModelUnavailable as e:
            raise JobFailure(str(e)) from None
        if item.kind == "chunk" and out_rate != rate:  # chunk frames are counted at the rate they were cut at
            raise JobFailure(f"The engine changed the rate of a chunk ({rate} -> {out_rate} Hz)")
        return stems, out_rate

    @staticmethod
    def _work_rate(job: Job) -> int:
        recipe = RECIPES[job.sep_type]
        return recipe.sample_rate or job.inputs[recipe.inputs[0]]["sample_rate"]

    def _output_labels(self, job: Job) -> dict[str, str]:
        algo = self.catalog.get(job.sep_type)
        return algo.output_labels(dict(job.options)) if algo else {}

    def _encode_outputs(self, job: Job, stems, rate: int, scratch: Path) -> list[dict]:  # noqa: ANN001
        """Encode each stem (given as an iterable of blocks) into storage; returns the job's file records."""
        fmt = audio.FORMATS[job.output_format]
        algo = self.catalog.get(job.sep_type)
        labels = self._output_labels(job)
        main = next(iter(job.inputs.values()))
        files = []
        for stem, blocks in stems:
            storage_name, download = output_names(job.hash, main["name"], algo.name, dict(job.options), stem,
                                                  fmt.extension, job.long_filenames)
            local = scratch / storage_name
            writer = None
            for block in blocks:  # the writer resamples where an encoder does not take the rate
                block = np.asarray(block, dtype=np.float32)
                if writer is None:
                    writer = audio.AudioWriter(local, job.output_format, rate, block.shape[0])
                writer.write(block)
            if writer is None:
                raise JobFailure(f"The engine produced no audio for {stem}")
            writer.close()
            key = f"processed/{storage_name}"
            size = self.storage.put_file(key, local)
            files.append({"type": labels.get(stem, stem.replace("_", " ").title()), "key": key,
                          "download": download, "bytes": size, "stem": stem})
        return files

    # ---------------------------------------------------------------- chunks

    def _chunk_key(self, job: Job, index: int, stem: str) -> str:
        return f"work/{job.id}/{index:05d}_{stem}.wav"

    def _store_chunk(self, job: Job, item: WorkItem, stems: dict[str, np.ndarray], scratch: Path) -> None:
        expected = RECIPES[job.sep_type].stems(dict(job.options))
        if list(stems) != expected:
            raise JobFailure(f"The engine returned stems {list(stems)}, expected {expected}")
        for stem, data in stems.items():
            local = scratch / f"{stem}.wav"
            # float WAV keeps the chunk exact; its rate field is informational (frames are what the merge uses)
            sf.write(local, np.asarray(data, dtype=np.float32).T, self._work_rate(job), subtype="FLOAT")
            self.storage.put_file(self._chunk_key(job, item.index, stem), local)

    def _merge(self, job: Job, scratch: Path) -> list[dict]:
        with self.db.reader() as s:
            chunks = s.query(WorkItem).filter(WorkItem.job_id == job.id, WorkItem.kind == "chunk").order_by(
                WorkItem.index).all()
        stems = RECIPES[job.sep_type].stems(dict(job.options))

        def pieces(stem: str):  # noqa: ANN202 - one chunk file at a time: memory holds a single chunk
            for c in chunks:
                with self.storage.local_file(self._chunk_key(job, c.index, stem)) as path:
                    data, _ = sf.read(path, dtype="float32", always_2d=True)
                end = c.start_frame + data.shape[0]  # the last chunk runs to the real end of the input
                yield Chunk(c.index, c.start_frame, end), data.T

        with self.storage.local_file(self._chunk_key(job, chunks[-1].index, stems[0])) as path:
            with sf.SoundFile(path) as f:
                rate = f.samplerate
                total = chunks[-1].start_frame + f.frames
        overlap = int(self.settings.chunk_overlap_seconds * rate)
        files = self._encode_outputs(
            job, ((stem, join_chunks(pieces(stem), total, overlap)) for stem in stems), rate, scratch)
        return files

    # ---------------------------------------------------------------- finishing

    def _complete(self, job: Job, item: WorkItem, files: list[dict] | None) -> None:
        with self.db.session() as s:
            db_item = queue.lock_item(s, item.id)
            if db_item.status != "running" or db_item.worker != self.name:
                return  # the lease was lost and someone else owns it now; their result counts
            current = queue.finish_item(s, db_item)
            if files is not None and current.status not in queue.FINISHED:
                current.status, current.files = "done", files
                current.finished_at = current.updated_at = utcnow()
        if files is not None:
            self.storage.delete_prefix(f"work/{job.id}")
            self._notify_webhook(job.hash)

    def _fail(self, job: Job, item: WorkItem, message: str) -> None:
        with self.db.session() as s:
            db_item = queue.lock_item(s, item.id)
            if db_item.status != "running" or db_item.worker != self.name:
                return  # not ours any more: whoever holds it now decides
            queue.fail_job(s, queue.lock_job(s, job.id), message)
        self.storage.delete_prefix(f"work/{job.id}")
        self._notify_webhook(job.hash)

    def _retry_or_fail(self, job: Job, item: WorkItem, reason: str) -> None:
        """Put the item back in the queue for another attempt, or fail the job (with a refund) after the last."""
        with self.db.session() as s:
            db_item = queue.lock_item(s, item.id)
            if db_item.status == "running" and db_item.worker == self.name \
                    and db_item.attempts < self.settings.max_attempts:
                queue.requeue_item(s, db_item)
                return
            attempts = db_item.attempts
        self._fail(job, item, f"The separation failed {attempts} times; last error: {reason}")

    def _notify_webhook(self, hash_value: str) -> None:
        with self.db.reader() as s:
            job = s.query(Job).filter(Job.hash == hash_value).one()
            url = job.webhook_url
        if url:
            send_webhook(url, {"hash": hash_value, **self.jobs.status(hash_value)}, self.settings)

    # ---------------------------------------------------------------- URL inputs

    def _run_remote(self, remote_id: int) -> None:
        from openmvsep.service.remote import RemoteFetchError, fetch
        from openmvsep.service.errors import ServiceError
        from openmvsep.store.models import RemoteJob

        with self.db.reader() as s:
            remote = s.get(RemoteJob, remote_id)
            url, remote_type = remote.url, remote.remote_type
        scratch = self.storage.scratch_dir()
        try:
            fetched = fetch(url, remote_type, scratch, max_bytes=self.settings.remote_max_bytes,
                            timeout=self.settings.remote_timeout_seconds,
                            allow_private=self.settings.remote_allow_private)
            self.jobs.finish_remote(remote_id, Upload(fetched.path, fetched.filename))
        except (RemoteFetchError, ServiceError) as e:
            self.jobs.fail_remote(remote_id, str(e))
        except Exception as e:
            log.exception("remote download %s failed", remote_id)
            self.jobs.fail_remote(remote_id, f"Download failed: {type(e).__name__}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

