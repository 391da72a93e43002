"""Result reuse: a job with the input (by content), algorithm, options and output format of a finished job whose
files still exist is done at once, with no worker, with its own copies of the outputs, charged per
`reuse_charge` and marked `reused` in `get`. Another format or option, or a first job whose files are gone, is
not reused; deleting or expiring either job's files leaves the other's whole. On a local disk and on S3."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select, update

from openmvsep.runner.janitor import sweep_expired
from openmvsep.store.db import utcnow
from openmvsep.store.models import CreditEntry, Job, WebhookEvent, WorkItem

from conftest import Harness, make_settings, stereo_mix, wav_bytes

SONG = wav_bytes(stereo_mix(1.0))
PREFIX = "http://testserver"


def done(h: Harness, hash_value: str) -> dict:
    body = h.get(hash_value)
    assert body["status"] == "done", body
    return body["data"]


def contents(h: Harness, data: dict) -> dict[str, bytes]:
    """Each output's bytes, as a client downloads them, by type."""
    out = {}
    for f in data["files"]:
        r = h.client.get(f["url"].removeprefix(PREFIX))
        assert r.status_code == 200, f["url"]
        assert len(r.content) == f["bytes"]
        out[f["type"]] = r.content
    return out


def first_job(h: Harness, token: str, **fields) -> tuple[str, dict[str, bytes]]:
    created = h.create(token, SONG, **fields)
    assert created["status"] == 200, created
    assert h.run_all() == 1
    return created["data"]["hash"], contents(h, done(h, created["data"]["hash"]))


def job_row(h: Harness, hash_value: str) -> Job:
    with h.ctx.db.reader() as s:
        job = s.scalar(select(Job).where(Job.hash == hash_value))
    assert job is not None
    return job


def charges(h: Harness, hash_value: str) -> list[int]:
    job = job_row(h, hash_value)
    with h.ctx.db.reader() as s:
        return list(s.scalars(select(CreditEntry.delta).where(CreditEntry.job_id == job.id)))


def expire(h: Harness, hash_value: str) -> None:
    with h.ctx.db.session() as s:
        s.execute(update(Job).where(Job.hash == hash_value).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert sweep_expired(h.ctx.db, h.ctx.storage) == 1


def test_a_second_identical_job_is_done_at_once_with_equal_files_and_charged_in_full(harness):
    a_token = harness.user("a@example.com", credits=100, premium=True)
    b_token = harness.user("b@example.com", credits=100, premium=True)
    a_hash, a_files = first_job(harness, a_token)

    created = harness.create(b_token, SONG, filename="Other Name.wav", webhook_url="https://example.com/hook")
    assert created["status"] == 200
    b_hash = created["data"]["hash"]
    b = done(harness, b_hash)  # before any worker ran
    assert harness.run_all() == 0
    with harness.ctx.db.reader() as s:
        b_job = s.scalar(select(Job).where(Job.hash == b_hash))
        assert s.scalar(select(func.count()).select_from(WorkItem).where(WorkItem.job_id == b_job.id)) == 0
        events = s.scalar(select(func.count()).select_from(WebhookEvent).where(WebhookEvent.job_id == b_job.id))
    assert events == 1  # its end is announced like any job's

    assert b["reused"] is True and "reused" not in done(harness, a_hash)
    assert contents(harness, b) == a_files
    a = done(harness, a_hash)
    assert [f["type"] for f in b["files"]] == [f["type"] for f in a["files"]]
    for fa, fb in zip(a["files"], b["files"]):
        assert fa["url"] != fb["url"] and b_hash.split(".")[0] in fb["url"]  # its own files, under its own names
        assert fb["download"].startswith("other-name_")
    assert charges(harness, a_hash) == charges(harness, b_hash) == [-1]
    assert job_row(harness, b_hash).reused_from == job_row(harness, a_hash).id


def test_a_reused_job_is_free_when_reuse_charge_is_none(make_harness):
    h = make_harness(reuse_charge="none")
    token = h.user(credits=100, premium=True)
    a_hash, a_files = first_job(h, token)
    b_hash = h.create(token, SONG)["data"]["hash"]
    assert contents(h, done(h, b_hash)) == a_files
    assert charges(h, a_hash) == [-1] and charges(h, b_hash) == []
    assert job_row(h, b_hash).credits_charged == 0


def test_another_output_format_or_input_is_not_reused(harness):
    token = harness.user(credits=100, premium=True)
    first_job(harness, token, output_format="1")
    other_format = harness.create(token, SONG, output_format="0")["data"]["hash"]
    other_input = harness.create(token, wav_bytes(stereo_mix(1.0, seed=5)), output_format="1")["data"]["hash"]
    for hash_value in (other_format, other_input):
        assert harness.get(hash_value)["status"] == "waiting"
        assert job_row(harness, hash_value).reused_from is None


def test_a_first_job_whose_files_are_gone_is_not_reused(harness):
    token = harness.user(credits=100, premium=True)
    expired, _ = first_job(harness, token)
    expire(harness, expired)
    after_expiry = harness.create(token, SONG)["data"]["hash"]
    assert harness.get(after_expiry)["status"] == "waiting"
    assert harness.run_all() == 1
    deleted = after_expiry
    r = harness.client.post("/api/separation/delete", data={"api_token": token, "hash": deleted})
    assert r.json()["success"] is True
    after_delete = harness.create(token, SONG)["data"]["hash"]
    assert harness.get(after_delete)["status"] == "waiting"


def test_deleting_or_expiring_one_jobs_files_leaves_the_others_whole(harness):
    token = harness.user(credits=100, premium=True)
    a_hash, a_files = first_job(harness, token)
    b_hash = harness.create(token, SONG)["data"]["hash"]
    b = done(harness, b_hash)

    r = harness.client.post("/api/separation/delete", data={"api_token": token, "hash": a_hash})
    assert r.json()["success"] is True
    assert harness.get(a_hash)["status"] == "not_found"
    assert contents(harness, b) == a_files  # the first job's files are gone, the second's are not

    c_hash = harness.create(token, SONG)["data"]["hash"]  # reused from the second, the newest with files
    c = done(harness, c_hash)
    assert job_row(harness, c_hash).reused_from == job_row(harness, b_hash).id
    expire(harness, b_hash)
    for f in b["files"]:
        assert harness.client.get(f["url"].removeprefix(PREFIX)).status_code == 404
    assert contents(harness, c) == a_files


@pytest.mark.parametrize("scope", ["own", "off"])
def test_reuse_scope(make_harness, scope):
    h = make_harness(reuse_results=scope)
    mine = h.user("me@example.com", credits=100, premium=True)
    theirs = h.user("them@example.com", credits=100, premium=True)
    first_job(h, mine)
    assert h.get(h.create(theirs, SONG)["data"]["hash"])["status"] == "waiting"
    own = h.get(h.create(mine, SONG)["data"]["hash"])["status"]
    assert own == ("done" if scope == "own" else "waiting")


def test_reuse_on_s3_copies_inside_the_store(tmp_path, seaweedfs):
    bucket = seaweedfs.new_bucket()
    h = Harness(make_settings(tmp_path, **bucket.settings()))
    try:
        token = h.user(credits=100, premium=True)
        a_hash, a_files = first_job(h, token)
        b_hash = h.create(token, SONG)["data"]["hash"]
        b = done(h, b_hash)
        assert b["reused"] is True and contents(h, b) == a_files
        r = h.client.post("/api/separation/delete", data={"api_token": token, "hash": a_hash})
        assert r.json()["success"] is True
        assert contents(h, b) == a_files
        keys = {k for k, _ in h.ctx.storage.list("processed")}
        assert keys == {f["key"] for f in job_row(h, b_hash).files}  # the first job's copies went with it
    finally:
        h.close()


def test_another_option_is_not_reused(make_harness, tmp_path):
    """Two values of one option (a tiny BS-RoFormer's overlap) run differently: the second is not a match."""
    pytest.importorskip("openmvsep.engine.models.roformer")
    from test_neural_jobs import ENTRIES, FIXTURE, install

    install(tmp_path / "h0" / "data", ENTRIES, {"tiny_bs.safetensors": FIXTURE / "weights.safetensors"})
    h = make_harness()
    token = h.user(credits=100, premium=True)
    mix = (0.2 * np.random.default_rng(0).standard_normal((2, 44100))).astype(np.float32)
    options = {"sep_type": "40", "add_opt1": "4", "add_opt2": "8"}
    first = h.create(token, wav_bytes(mix), **options)["data"]["hash"]
    assert h.run_all() == 1 and h.get(first)["status"] == "done"
    other_option = h.create(token, wav_bytes(mix), **{**options, "add_opt2": "2"})["data"]["hash"]
    assert h.get(other_option)["status"] == "waiting"
    same_options = h.create(token, wav_bytes(mix), **options)["data"]["hash"]
    assert h.get(same_options)["data"]["reused"] is True
