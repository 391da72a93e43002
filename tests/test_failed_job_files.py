"""A failed job was refunded: nothing of it stays downloadable, and history reports it as gone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from openmvsep.runner.housekeeping import Housekeeping
from openmvsep.service import lifecycle
from openmvsep.store.models import Job

from conftest import stereo_mix, wav_bytes

SONG = wav_bytes(stereo_mix(1.0))


def _input_path(h, hash_value: str) -> str:
    with h.ctx.db.reader() as s:
        job = s.scalar(select(Job).where(Job.hash == hash_value))
    return f"/storage/{job.inputs['audiofile']['key']}"


def _history(h, token: str) -> dict:
    return h.client.get("/api/app/separation_history", params={"api_token": token}).json()["data"][0]


def test_a_job_failed_in_the_worker_keeps_no_input_and_history_says_it_is_gone(harness, monkeypatch):
    token = harness.user(credits=5, premium=True)
    hash_value = harness.create(token, SONG, "song.wav")["data"]["hash"]
    path = _input_path(harness, hash_value)
    assert harness.client.get(path).status_code == 200
    assert _history(harness, token)["credits"] == 1

    from openmvsep.runner import separation

    def unplayable(*_args, **_kwargs):  # what the engine raises for an input it cannot use
        raise separation.JobFailure("The audio could not be decoded")

    monkeypatch.setattr(separation.SeparationWork, "_separate", unplayable)
    harness.run_all()
    assert harness.get(hash_value)["status"] == "failed"  # the row still tells why
    assert harness.client.get(path).status_code == 404
    item = _history(harness, token)
    assert item["hash"] == hash_value and item["job_exists"] is False and item["credits"] is None
    user = harness.client.get("/api/app/user", params={"api_token": token}).json()["data"]
    assert user["premium_minutes"] == 5  # refunded
    assert not any(p.is_file() for p in Path(harness.ctx.storage.root, "temp").rglob("*"))


def test_a_job_failed_after_lost_workers_keeps_no_input(make_harness):
    h = make_harness(max_attempts=1)
    token = h.user(credits=5, premium=True)
    hash_value = h.create(token, wav_bytes(np.zeros((2, 44100), dtype=np.float32) + 0.1), "song.wav")["data"]["hash"]
    path = _input_path(h, hash_value)
    assert lifecycle.claim_next(h.ctx.db, "vanished", -1) is not None  # its lease has run out already
    assert Housekeeping(h.ctx.db, h.ctx.storage, h.settings).run_once() == 1
    assert h.get(hash_value)["status"] == "failed"
    assert h.client.get(path).status_code == 404
    assert _history(h, token)["job_exists"] is False
