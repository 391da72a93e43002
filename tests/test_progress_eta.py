"""`separation/get`'s additive keys: `progress` (from the chunks and from what the worker reports inside a piece,
stored and never lowered) and `eta_seconds` (the queue ahead, the live workers and the measured speeds)."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from openmvsep.service import lifecycle
from openmvsep.service.jobs.eta import queue_wait_seconds
from openmvsep.service.jobs.progress import percent, raise_progress
from openmvsep.store.db import utcnow
from openmvsep.store.models import Job

from conftest import stereo_mix, wav_bytes
from processes import Server

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "engine" / "bs_roformer"
TINY_MODEL = f"""
- name: tiny_bs
  serves: ["40:4"]
  model_type: bs_roformer
  config: {FIXTURE / "config.yaml"}
  filename: tiny_bs.safetensors
"""
# Three chunks of a 3 s input, each a few of the tiny model's 0.25 s windows: the engine reports every batch.
CHUNKED = dict(chunk_threshold_seconds=2.0, chunk_seconds=1.0, chunk_overlap_seconds=0.1)


def model_harness(make_harness, tmp_path, **overrides):
    pytest.importorskip("openmvsep.engine.models.roformer")
    data = tmp_path / "h0" / "data"  # where make_harness puts its first harness
    (data / "weights").mkdir(parents=True)
    shutil.copyfile(FIXTURE / "weights.safetensors", data / "weights" / "tiny_bs.safetensors")
    (data / "models.yaml").write_text(TINY_MODEL)
    return make_harness(**overrides)


def create_model_job(h, seconds: float) -> str:
    token = h.user(premium=True, credits=1000)
    mix = (0.2 * np.random.default_rng(0).standard_normal((2, int(44100 * seconds)))).astype(np.float32)
    created = h.create(token, wav_bytes(mix, subtype="FLOAT"), sep_type="40", add_opt1="4", add_opt2="2")
    assert created["success"] is True, created
    return created["data"]["hash"]


def stored(h, hash_value: str) -> Job:
    with h.ctx.db.reader() as s:
        job = s.scalar(select(Job).where(Job.hash == hash_value))
        assert job is not None
        return job


# ------------------------------------------------------------------------------------------------ progress


def test_progress_over_a_chunked_job_never_goes_back_and_is_100_at_done(make_harness, tmp_path):
    h = model_harness(make_harness, tmp_path, progress_report_seconds=0.0, **CHUNKED)
    hash_value = create_model_job(h, 3.0)
    assert stored(h, hash_value).all_chunks == 3
    seen: list[tuple[str, int]] = []
    worker = threading.Thread(target=h.run_all)
    worker.start()
    while True:  # the page's view while the worker runs: every answer, as a polling client gets them
        body = h.get(hash_value)
        seen.append((body["status"], body["data"]["progress"]))
        if body["status"] in ("done", "failed"):
            break
    worker.join()
    assert seen[-1] == ("done", 100), seen[-1]
    values = [p for _, p in seen]
    assert values == sorted(values), f"progress went back: {values}"
    assert all(p < 100 for status, p in seen if status != "done")  # 100 means done, nothing less


def test_the_worker_stores_its_progress_inside_a_chunk(make_harness, tmp_path):
    h = model_harness(make_harness, tmp_path, progress_report_seconds=0.0, **CHUNKED)
    hash_value = create_model_job(h, 3.0)
    assert h.worker.run_next()  # chunk 0, with nothing finished before it
    job = stored(h, hash_value)
    # The stored fraction is only ever written by the worker's reports: its last one said the model had finished
    # chunk 0, of three chunks and the merge.
    assert job.finished_chunks == 1 and job.progress == pytest.approx(1 / 4)
    assert h.get(hash_value)["data"]["progress"] == 25


def test_progress_writes_are_throttled(make_harness, tmp_path):
    h = model_harness(make_harness, tmp_path, progress_report_seconds=3600.0, **CHUNKED)
    hash_value = create_model_job(h, 3.0)
    assert h.worker.run_next()
    # One write in the hour: the first report (one batch of several), not the chunk's end.
    assert 0 < stored(h, hash_value).progress < 1 / 4


def test_a_whole_input_reports_its_model_passes(make_harness, tmp_path):
    h = model_harness(make_harness, tmp_path, progress_report_seconds=0.0)
    hash_value = create_model_job(h, 1.0)
    assert h.worker.run_next()
    assert stored(h, hash_value).progress == pytest.approx(0.95)  # the model's share; encoding is the rest
    assert h.get(hash_value)["data"]["progress"] == 100


def test_stored_progress_is_never_lowered(harness):
    token = harness.user(premium=True, credits=100)
    hash_value = harness.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    job_id = stored(harness, hash_value).id
    with harness.ctx.db.session() as s:
        s.get(Job, job_id).status = "processing"
    raise_progress(harness.ctx.db, job_id, 0.6, chunk=False)
    raise_progress(harness.ctx.db, job_id, 0.2, chunk=False)  # a late report, or a piece started over elsewhere
    assert stored(harness, hash_value).progress == pytest.approx(0.6 * 0.95)
    assert harness.get(hash_value)["data"]["progress"] == 57
    # Its worker died: back in the queue, the number stays where it was.
    with harness.ctx.db.session() as s:
        s.get(Job, job_id).status = "waiting"
    assert harness.get(hash_value)["data"]["progress"] == 57


def test_chunk_counts_only_raise_the_percentage():
    # Every chunk done can be no more than the merge; the merge no more than done.
    stages = [
        percent("waiting", 0.0, 0, 4),
        percent("distributing", 0.0, 0, 4),
        percent("distributing", 0.3, 1, 4),  # a worker's report ahead of the counts
        percent("distributing", 0.3, 2, 4),
        percent("distributing", 0.0, 4, 4),
        percent("merging", 0.0, 4, 4),
        percent("done", 0.0, 4, 4),
    ]
    assert stages == sorted(stages) and stages[-1] == 100 and stages[-2] < 100
    assert percent("failed", 0.5) is None


# ------------------------------------------------------------------------------------------------ time left


# Every answer measures again; repeated inputs queue and run (reused results would be done at once).
FRESH = dict(eta_cache_seconds=0.0, eta_queue_cache_seconds=0.0, reuse_results="off")


def test_the_queue_ahead_is_shared_by_the_live_workers(make_harness):
    harness = make_harness(**FRESH)
    token = harness.user(premium=True, credits=1000)
    audio = wav_bytes(stereo_mix(2.0))
    first, second, third, fourth = (harness.create(token, audio)["data"]["hash"] for _ in range(4))
    harness.run_all(limit=1)  # one finished job: the speed the others are estimated at
    db = harness.ctx.db
    eta = harness.ctx.jobs.eta
    factor, _ = eta.measured(55)
    assert factor is not None and factor > 0
    # Two workers take the next two jobs: two live workers (their leases are their heartbeats), two jobs running.
    assert lifecycle.claim_next(db, "worker-a", 60.0) and lifecycle.claim_next(db, "worker-b", 60.0)
    assert eta.fleet().workers == 2
    now = utcnow()
    row = harness.ctx.jobs.queries.status_row(fourth)
    running = [harness.ctx.jobs.queries.status_row(h) for h in (second, third)]
    running_left = sum(max(0.0, factor * r.duration - (now - r.started_at).total_seconds()) for r in running)
    expected = queue_wait_seconds(0.0, running_left, 2) + factor * row.duration
    assert eta.seconds_left(row, now) == pytest.approx(expected)
    # The same queue with one worker takes longer: what the running jobs have left is not shared.
    lifecycle.release_lost_work(db, 3, workers=["worker-b"], forgive=True)
    assert eta.fleet().workers == 1
    one = harness.ctx.jobs.queries.status_row(fourth)
    assert eta.seconds_left(one, now) > eta.seconds_left(row, now) - 1e-9
    assert stored(harness, first).status == "done"


def test_get_says_the_time_left(make_harness):
    harness = make_harness(**FRESH)
    token = harness.user(premium=True, credits=1000)
    audio = wav_bytes(stereo_mix(2.0))
    first = harness.create(token, audio)["data"]["hash"]
    assert harness.get(first)["data"]["eta_seconds"] is None  # nothing measured yet: null, not a guess
    harness.run_all()
    with harness.ctx.db.session() as s:  # 2 s of audio in 10 s: factor 5
        job = s.scalar(select(Job).where(Job.hash == first))
        job.finished_at = job.started_at + timedelta(seconds=10)
    waiting = [harness.create(token, audio)["data"]["hash"] for _ in range(3)]
    assert [harness.get(h)["data"]["eta_seconds"] for h in waiting] == [10, 20, 30]
    assert harness.get(first)["data"]["eta_seconds"] == 0


def test_eta_is_within_twice_the_real_wait_of_a_queue(tmp_path):
    """A real server with one worker: a few jobs measure the speed, then a queue of sep_type 55 jobs of different
    lengths; the last one's first `eta_seconds` is compared with the wait it really had."""
    server = Server(
        tmp_path / "data",
        workers=1,
        OPENMVSEP_PUBLIC_URL="",
        OPENMVSEP_ETA_CACHE_SECONDS="0",
        OPENMVSEP_ETA_QUEUE_CACHE_SECONDS="0",
        OPENMVSEP_REUSE_RESULTS="off",  # the measuring jobs run, even where their inputs repeat
    )
    try:
        token = server.cli(
            "user", "create", "--email", "q@example.com", "--password", "password123", "--premium", "--credits", "100"
        ).split()[-1]

        def create(seconds: float) -> str:
            path = tmp_path / f"in-{seconds:g}.wav"
            if not path.exists():
                path.write_bytes(wav_bytes(stereo_mix(seconds)))
            body = server.curl(
                "/api/separation/create",
                "-F",
                f"api_token={token}",
                "-F",
                "sep_type=55",
                "-F",
                "add_opt1=dsp",
                "-F",
                "output_format=1",
                "-F",
                f"audiofile=@{path}",
            )
            assert body["success"] is True, body
            return body["data"]["hash"]

        for seconds in (40, 60, 80):  # measured, not assumed: the server's own speed on this machine, now
            server.wait_status(create(seconds), {"done"}, timeout=120)
        queue = [create(seconds) for seconds in (60, 40, 80, 60, 40, 80)]
        last = queue[-1]
        asked = time.monotonic()
        first = server.curl(f"/api/separation/get?hash={last}")
        estimate = first["data"]["eta_seconds"]
        assert first["status"] == "waiting" and estimate is not None, first
        server.wait_status(last, {"done"}, timeout=300)
        waited = time.monotonic() - asked
        assert waited / 2 <= estimate <= waited * 2, f"estimated {estimate} s, waited {waited:.1f} s"
    finally:
        server.stop()
