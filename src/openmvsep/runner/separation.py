"""Separation work in a worker: a whole input or one chunk of it through the recipe, and the merge of chunks.

Errors are sorted by what a retry could change: a user-facing error (bad input, a model that is not installed,
a recipe that cannot run) fails the job at once with its message; anything else (an engine, storage or machine
error) puts the piece back for another attempt, maybe on another worker.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from openmvsep.algorithms.choice import Choice
from openmvsep.algorithms.recipes import RECIPES, Outputs, Recipe
from openmvsep.engine import audio
from openmvsep.engine.documents import Document
from openmvsep.engine.joins import Chunk, join_chunks
from openmvsep.engine.runtime import Runtime
from openmvsep.errors import UserError
from openmvsep.runner.janitor import sweep_failed
from openmvsep.service import lifecycle
from openmvsep.service.catalog import Catalog
from openmvsep.service.jobs.progress import ProgressReport
from openmvsep.service.naming import output_key, output_names, storage_token
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.files import Storage
from openmvsep.store.models import Job, WorkItem

log = logging.getLogger("openmvsep.worker")


class JobFailure(UserError):
    """A job that cannot succeed however often it is retried; the message is shown to the user."""


def _recipe(job: Job) -> Recipe:
    recipe = RECIPES.get(job.sep_type)
    if recipe is None:
        raise JobFailure(f"Separation type {job.sep_type} cannot run on this server")
    return recipe


def _bounded(measured: float, start: float, duration: float | None) -> float:
    """How many seconds of an input to decode from `start`: what the piece asks for (None: to the end), but never
    past the length the input was measured and priced at, plus slack. A stream that yields more than was measured
    (a job created before lengths were counted, a file that decodes differently here) cannot make memory grow
    past what the job pays for."""
    most = max(0.0, measured + audio.LENGTH_SLACK_SECONDS - start)
    return most if duration is None else min(duration, most)


class SeparationWork:
    def __init__(
        self,
        worker: str,
        settings: Settings,
        db: Database,
        storage: Storage,
        runtime: Runtime,
        catalog: Catalog,
    ):
        self.worker, self.settings, self.db, self.storage = worker, settings, db, storage
        self.runtime, self.catalog = runtime, catalog

    def run_piece(self, claim: lifecycle.Claim) -> None:
        """A whole input (its outputs end the job) or one chunk of a long one (stored for the merge)."""

        def piece(job: Job, item: WorkItem, choice: Choice, scratch: Path) -> None:
            outputs, rate = self._separate(job, item, choice)
            if item.kind == "whole":
                files = self._encode(
                    job,
                    choice,
                    ((name, out if isinstance(out, Document) else [out]) for name, out in outputs.items()),
                    rate,
                    scratch,
                )
                self._complete(job, item, files)
            else:
                self._store_chunk(job, item, choice, outputs, scratch)
                self._complete(job, item, None)

        self._guarded(claim, piece)

    def run_merge(self, claim: lifecycle.Claim) -> None:
        """The chunks of a long input crossfaded back together and encoded: the job's outputs."""
        self._guarded(
            claim, lambda job, item, choice, scratch: self._complete(job, item, self._merge(job, choice, scratch))
        )

    def _guarded(self, claim: lifecycle.Claim, body: Callable[[Job, WorkItem, Choice, Path], None]) -> None:
        """Run `body` on the claimed item with a scratch folder, and settle its errors by what a retry could
        change: a UserError fails the job now, anything else puts the piece back (or fails after the last try)."""
        with self.db.reader() as s:
            item = s.get(WorkItem, claim.id)
            job = s.get(Job, claim.job_id)
        if item is None or job is None:  # a claimed item and its job are not deleted while the item runs
            raise LookupError(f"work item {claim.id} of job {claim.job_id} is not in the database")
        scratch = self.storage.scratch_dir()
        try:
            body(job, item, self.catalog.choice(job.sep_type, job.options), scratch)
        except UserError as e:  # the same input would fail again: no retry
            if lifecycle.fail_item(self.db, item.id, self.worker, e.message):
                self._failed(job)
        except Exception:  # another attempt (maybe elsewhere) may pass
            log.exception("job %s: work item %s failed (attempt %s)", job.hash, item.id, claim.attempts)
            if lifecycle.retry_or_fail_item(self.db, item.id, self.worker, self.settings.max_attempts):
                self._failed(job)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _complete(self, job: Job, item: WorkItem, files: list[dict] | None) -> None:
        if lifecycle.complete_item(self.db, item.id, self.worker, files):
            self._ended(job)

    def _failed(self, job: Job) -> None:
        sweep_failed(self.db, self.storage, job.id)  # refunded: its input is not kept downloadable
        self._ended(job)

    def _ended(self, job: Job) -> None:
        """This worker ended the job: its chunk files are of no more use. (Its webhook event was written with the
        job's end; the API processes send it, so no worker waits on a receiver.)"""
        self.storage.delete_prefix(f"work/{job.id}")

    # ---------------------------------------------------------------- separating

    def _separate(self, job: Job, item: WorkItem, choice: Choice) -> tuple[Outputs, int]:
        recipe = _recipe(job)
        rate = self._work_rate(job)
        start, duration = 0.0, None
        if item.kind == "chunk":
            start = item.start_frame / rate
            last = item.index == job.all_chunks - 1
            duration = None if last else (item.end_frame - item.start_frame) / rate
        inputs = {}
        for role in recipe.inputs:
            span = _bounded(job.inputs[role]["duration"], start, duration)
            with self.storage.local_file(job.inputs[role]["key"]) as path:
                inputs[role], _ = audio.read_audio(path, sample_rate=rate, start=start, duration=span)
        # The engine's model passes report how far they are; the job's row shows it (throttled, never lowered).
        self.runtime.progress = ProgressReport(
            self.db, job.id, chunk=item.kind == "chunk", every_seconds=self.settings.progress_report_seconds
        )
        try:
            stems, out_rate = recipe.run(inputs, rate, choice, self.runtime)  # ModelUnavailable is a UserError
        finally:
            self.runtime.progress = None
        if item.kind == "chunk" and out_rate != rate:  # chunk frames are counted at the rate they were cut at
            raise JobFailure(f"The engine changed the rate of a chunk ({rate} -> {out_rate} Hz)")
        return stems, out_rate

    @staticmethod
    def _work_rate(job: Job) -> int:
        recipe = _recipe(job)
        return recipe.sample_rate or job.inputs[recipe.inputs[0]]["sample_rate"]

    def _encode(
        self,
        job: Job,
        choice: Choice,
        stems: Iterable[tuple[str, Iterable[np.ndarray] | Document]],
        rate: int,
        scratch: Path,
    ) -> list[dict]:
        """Encode each stem (given as an iterable of blocks) into storage, and store each document as it is;
        returns the job's file records. A document keeps its own extension whatever output format was asked."""
        algo = self.catalog.get(job.sep_type)
        assert algo is not None  # run() built `choice` with catalog.choice, which requires the algorithm
        labels = algo.output_labels(choice) if algo else {}
        main = next(iter(job.inputs.values()))
        extension = audio.FORMATS[job.output_format].extension
        token = storage_token()  # one unguessable folder for this job's outputs

        def encoded(stem: str, blocks: Iterable[np.ndarray] | Document) -> dict:
            document = blocks if isinstance(blocks, Document) else None
            storage_name, download = output_names(
                job.hash,
                main["name"],
                algo.name,
                choice,
                stem,
                document.extension if document else extension,
                job.long_filenames,
            )
            local = scratch / storage_name
            if document is not None:
                local.write_bytes(document.data)
                label = labels.get(stem) or document.label or stem.replace("_", " ").title()
                return self._stored(token, storage_name, local, download, stem, label)
            assert not isinstance(blocks, Document)  # for mypy: documents were stored above
            writer = None
            for block in blocks:  # the writer resamples where an encoder does not take the rate
                block = np.asarray(block, dtype=np.float32)
                if writer is None:
                    writer = audio.AudioWriter(local, job.output_format, rate, block.shape[0])
                writer.write(block)
            if writer is None:
                raise JobFailure(f"The engine produced no audio for {stem}")
            writer.close()
            label = labels.get(stem, stem.replace("_", " ").title())
            return self._stored(token, storage_name, local, download, stem, label)

        # Stems are encoded side by side: the codecs (LAME, AAC, FLAC) release the GIL, and after a GPU
        # separation a multi-stem job's encoding would otherwise take longer than the model did.
        with ThreadPoolExecutor(max_workers=self.settings.encode_threads, thread_name_prefix="encode") as pool:
            return list(pool.map(lambda pair: encoded(*pair), stems))

    def _stored(self, token: str, storage_name: str, local: Path, download: str, stem: str, label: str) -> dict:
        """Put one finished output file into storage; its record in the job's `files`."""
        key = output_key(token, storage_name)
        size = self.storage.put_file(key, local)
        return {"type": label, "key": key, "download": download, "bytes": size, "stem": stem}

    # ---------------------------------------------------------------- chunks

    @staticmethod
    def _chunk_key(job: Job, index: int, stem: str) -> str:
        return f"work/{job.id}/{index:05d}_{stem}.wav"

    def _store_chunk(self, job: Job, item: WorkItem, choice: Choice, stems: Outputs, scratch: Path) -> None:
        expected = _recipe(job).stems(choice)
        if list(stems) != expected:
            raise JobFailure(f"The engine returned stems {list(stems)}, expected {expected}")
        for stem, data in stems.items():
            if isinstance(data, Document):  # chunks are joined as audio; a recipe making documents is not chunkable
                raise JobFailure(f"The engine returned a document ({stem}) for a chunk of a long input")
            local = scratch / f"{stem}.wav"
            # float WAV keeps the chunk exact; its rate field is informational (frames are what the merge uses)
            sf.write(local, np.asarray(data, dtype=np.float32).T, self._work_rate(job), subtype="FLOAT")
            self.storage.put_file(self._chunk_key(job, item.index, stem), local)

    def _merge(self, job: Job, choice: Choice, scratch: Path) -> list[dict]:
        with self.db.reader() as s:
            chunks = (
                s.query(WorkItem)
                .filter(WorkItem.job_id == job.id, WorkItem.kind == "chunk")
                .order_by(WorkItem.index)
                .all()
            )
        stems = _recipe(job).stems(choice)

        def pieces(stem: str) -> Iterable[tuple[Chunk, np.ndarray]]:  # one chunk file per stem at a time in memory
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
        return self._encode(
            job, choice, ((stem, join_chunks(pieces(stem), total, overlap)) for stem in stems), rate, scratch
        )
