"""A job's life is logged once per step: created, claimed (by which worker), done or failed (and why)."""

from __future__ import annotations

import logging

from conftest import stereo_mix, wav_bytes


def job_lines(caplog, hash_value: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "openmvsep.jobs" and hash_value in r.getMessage()]


def test_a_job_that_finishes(harness, caplog):
    caplog.set_level(logging.INFO, logger="openmvsep.jobs")
    hash_value = harness.create(harness.user(), wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    assert harness.run_all() == 1
    lines = job_lines(caplog, hash_value)
    assert len(lines) == 3, lines
    assert "created" in lines[0] and "sep_type 55" in lines[0]
    assert "claimed by test-worker" in lines[1] and "attempt 1" in lines[1]
    assert lines[2].endswith("done (2 file(s))")


def test_a_job_that_fails_says_why(harness, caplog):
    caplog.set_level(logging.INFO, logger="openmvsep.jobs")
    token = harness.user()
    hash_value = harness.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    with harness.ctx.db.session() as s:  # the stored input vanishes: a permanent failure
        from openmvsep.store.models import Job

        key = s.query(Job).filter(Job.hash == hash_value).one().inputs["audiofile"]["key"]
    (harness.ctx.storage.root / key).write_bytes(b"not audio at all")
    harness.run_all()
    lines = job_lines(caplog, hash_value)
    failed = [line for line in lines if "failed:" in line]
    assert len(failed) == 1 and harness.get(hash_value)["data"]["message"] in failed[0], lines
    assert [line for line in lines if "claimed by" in line] and len(lines) == 3
