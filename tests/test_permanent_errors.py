"""An error the user's input causes fails the job at once with a plain message; nothing retries it, and no
message shows the server's internals."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from openmvsep.store.models import Job, WorkItem

from conftest import stereo_mix, wav_bytes


def test_a_reference_matchering_refuses_fails_once_with_its_reason(harness):
    token = harness.user()
    files = {
        "target_audiofile": ("target.wav", wav_bytes(stereo_mix(3.0)), "audio/wav"),
        "reference_audiofile": ("ref.wav", wav_bytes(np.zeros((2, 1), dtype=np.float32) + 0.1), "audio/wav"),
    }
    r = harness.client.post(
        "/api/separation/create", data={"api_token": token, "sep_type": "68", "output_format": "1"}, files=files
    ).json()
    assert r["success"] is True, r
    harness.run_all()
    failed = harness.get(r["data"]["hash"])
    assert failed["status"] == "failed", failed
    message = failed["data"]["message"]
    assert "times" not in message and "Error" not in message, message  # its own reason, first time, no class name
    with harness.ctx.db.reader() as s:
        job = s.scalar(select(Job).where(Job.hash == r["data"]["hash"]))
        (item,) = s.scalars(select(WorkItem).where(WorkItem.job_id == job.id))
    assert item.attempts == 1


def test_an_internal_error_after_the_last_attempt_names_no_python_class(make_harness, monkeypatch):
    h = make_harness(max_attempts=2)
    token = h.user()
    hash_value = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    from openmvsep.runner import separation

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(separation.SeparationWork, "_encode", broken)
    h.run_all()
    failed = h.get(hash_value)
    assert failed["status"] == "failed"
    message = failed["data"]["message"]
    assert "failed 2 times" in message and "ZeroDivisionError" not in message and "division" not in message
