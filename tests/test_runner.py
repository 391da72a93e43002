"""The runner: long inputs in chunks, lost workers, restarts, retention."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import soundfile as sf
from sqlalchemy import select, update

from openmvsep.runner.janitor import sweep_expired
from openmvsep.service import lifecycle
from openmvsep.store.db import utcnow
from openmvsep.store.models import Job, WorkItem

from conftest import stereo_mix, wav_bytes


def download_stems(h, hash_value) -> dict[str, np.ndarray]:
    out = {}
    for f in h.get(hash_value)["data"]["files"]:
        r = h.client.get(f["url"].removeprefix("http://testserver"))
        audio, _ = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
        out[f["type"]] = audio.T
    return out


def test_long_input_is_split_distributed_merged_without_clicks(make_harness):
    h = make_harness(chunk_threshold_seconds=4, chunk_seconds=2, chunk_overlap_seconds=0.25)
    token = h.user()
    mix = stereo_mix(7.3)
    hash_value = h.create(token, wav_bytes(mix, subtype="FLOAT"))["data"]["hash"]
    with h.ctx.db.reader() as s:
        chunks = s.scalars(select(WorkItem).where(WorkItem.kind == "chunk").order_by(WorkItem.index)).all()
    assert len(chunks) == 4
    assert h.worker.run_next()
    st = h.get(hash_value)
    assert st["status"] == "distributing"
    assert st["data"]["finished_chunks"] == 1 and st["data"]["all_chunks"] == 4
    assert {"queue_count", "current_order"} <= set(st["data"])
    for _ in range(3):
        assert h.worker.run_next()
    st = h.get(hash_value)
    assert st["status"] == "merging" and st["data"]["finished_chunks"] == 4
    assert h.worker.run_next()  # the merge
    assert not h.worker.run_next()
    stems = download_stems(h, hash_value)
    joined = stems["Center"] + stems["Wide"]
    assert joined.shape == mix.shape
    np.testing.assert_allclose(joined, mix, atol=1e-5)
    # No clicks: the centre stem's sample-to-sample steps at the joins are no larger than elsewhere.
    steps = np.abs(np.diff(stems["Center"], axis=1)).max(axis=0)
    rate = 44100
    joins = [int(b * rate) for b in (2, 4, 6)]
    near = np.concatenate([steps[j - 2000 : j + 2000] for j in joins])
    assert near.max() <= 1.2 * np.percentile(steps, 99.9)
    # Work files of the chunks are gone once merged.
    assert not (h.ctx.storage.root / "work").exists() or not any((h.ctx.storage.root / "work").rglob("*.wav"))


def test_worker_death_requeues_and_job_finishes_charged_once(make_harness):
    h = make_harness(lease_seconds=30)
    token = h.user(credits=10, premium=True)
    hash_value = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    # A worker claims the job and dies without a word.
    claim = lifecycle.claim_next(h.ctx.db, "dead-worker", 30)
    assert claim is not None and h.get(hash_value)["status"] == "processing"
    assert lifecycle.release_lost_work(h.ctx.db, 3) == 0  # lease still valid: nothing to take back
    with h.ctx.db.session() as s:
        s.execute(update(WorkItem).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert lifecycle.release_lost_work(h.ctx.db, 3) == 1
    assert h.get(hash_value)["status"] == "waiting"
    assert h.run_all() == 1
    assert h.get(hash_value)["status"] == "done"
    user = h.client.get("/api/app/user", params={"api_token": token}).json()["data"]
    assert user["premium_minutes"] == 9


def test_job_fails_with_refund_after_max_attempts(make_harness):
    h = make_harness(max_attempts=2)
    token = h.user(credits=10, premium=True)
    hash_value = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    for attempt in range(2):
        assert lifecycle.claim_next(h.ctx.db, f"w{attempt}", 30) is not None
        lifecycle.release_lost_work(h.ctx.db, 2, workers=[f"w{attempt}"])
    st = h.get(hash_value)
    assert st["status"] == "failed" and "stopped 2 times" in st["data"]["message"]
    assert h.client.get("/api/app/user", params={"api_token": token}).json()["data"]["premium_minutes"] == 10
    assert h.run_all() == 0


def test_late_result_of_a_lost_worker_is_ignored(make_harness):
    h = make_harness()
    token = h.user()
    hash_value = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    claim = lifecycle.claim_next(h.ctx.db, "slow", 30)
    lifecycle.release_lost_work(h.ctx.db, 3, workers=["slow"])
    assert h.run_all() == 1  # another worker does it
    first = h.get(hash_value)["data"]["files"]
    # the slow worker comes back and reports
    late = [{"type": "X", "key": "processed/x", "download": "x", "bytes": 1, "stem": "x"}]
    assert lifecycle.complete_item(h.ctx.db, claim.id, "slow", late) is False
    assert h.get(hash_value)["data"]["files"] == first


def test_retention_expires_files_keeps_history(make_harness):
    h = make_harness()
    token = h.user()
    hash_value = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    h.run_all()
    with h.ctx.db.session() as s:
        s.execute(update(Job).values(expires_at=utcnow() - timedelta(hours=1)))
    assert sweep_expired(h.ctx.db, h.ctx.storage) == 1
    assert h.get(hash_value)["status"] == "not_found"
    item = h.client.get("/api/app/separation_history", params={"api_token": token}).json()["data"][0]
    assert item["job_exists"] is False and item["credits"] is None and item["time_left"] < 0
    assert [p for p in h.ctx.storage.root.rglob("*") if p.is_file() and ".scratch" not in p.parts] == []


def test_pieces_of_a_job_failed_meanwhile_end_without_reviving_it(make_harness):
    """Another piece failed the job (and refunded it) while these ran: a retried piece ends instead of going
    back to the queue, and a finished last chunk queues no merge."""
    h = make_harness(chunk_threshold_seconds=2, chunk_seconds=1, chunk_overlap_seconds=0.1)
    token = h.user(credits=10, premium=True)
    hash_value = h.create(token, wav_bytes(stereo_mix(2.8)))["data"]["hash"]
    claims = [lifecycle.claim_next(h.ctx.db, name, 60) for name in ("a", "b", "c")]
    assert [c.kind for c in claims] == ["chunk"] * 3
    with h.ctx.db.session() as s:
        lifecycle.fail_job(s, lifecycle.lock_job(s, claims[0].job_id), "broken")
        for claim in claims[1:]:  # as if their rows had been locked by their workers while the job failed
            s.get(WorkItem, claim.id).status = "running"
    with h.ctx.db.session() as s:
        lifecycle.requeue_item(s, lifecycle.lock_item(s, claims[1].id))
        job = lifecycle.finish_item(s, lifecycle.lock_item(s, claims[2].id))
        assert job.status == "failed"
    with h.ctx.db.reader() as s:
        items = s.query(WorkItem).filter(WorkItem.job_id == claims[0].job_id).all()
        assert {i.id: i.status for i in items}[claims[1].id] == "failed"
        assert not [i for i in items if i.kind == "merge"]
    assert h.get(hash_value)["status"] == "failed"
    assert lifecycle.claim_next(h.ctx.db, "d", 60) is None
