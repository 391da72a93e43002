"""A DSP job through the whole API: create, queue, work, done, download, decode, check the audio."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from conftest import stereo_mix, wav_bytes


def test_dsp_centre_job_end_to_end(harness):
    token = harness.user()
    mix = stereo_mix()
    created = harness.create(token, wav_bytes(mix, subtype="FLOAT"))
    assert created["status"] == 200 and created["success"] is True
    hash_value = created["data"]["hash"]
    assert created["data"]["link"] == f"http://testserver/api/separation/get?hash={hash_value}"
    assert hash_value.endswith("-song.wav") and len(hash_value.split("-")[1]) == 10

    waiting = harness.get(hash_value)
    # MVSep's keys, and openmvsep's additive ones: nothing done, and no speed measured yet to tell the time left
    assert waiting == {
        "success": True,
        "status": "waiting",
        "data": {"queue_count": 1, "current_order": 1, "progress": 0, "eta_seconds": None},
    }

    assert harness.run_all() == 1
    done = harness.get(hash_value)
    assert done["success"] is True and done["status"] == "done"
    data = done["data"]
    assert data["hash"] == hash_value
    assert data["output_format"] == "wav (uncompressed, 32 bit)"
    assert [f["type"] for f in data["files"]] == ["Center", "Wide"]
    stems = {}
    for f in data["files"]:
        assert f["url"].startswith("http://testserver/storage/processed/") and "?" not in f["url"]
        assert f["url"].endswith(f"_{f['type'].lower()}.wav") and f["download"].endswith(f"_{f['type'].lower()}.wav")
        r = harness.client.get(f["url"].removeprefix("http://testserver"))
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert int(r.headers["content-length"]) == f["bytes"]
        audio, rate = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
        assert rate == 44100
        stems[f["type"]] = audio.T
    np.testing.assert_allclose(stems["Center"] + stems["Wide"], mix, atol=1e-5)
    # The centre-panned tone lands in Center: its channels agree far more than the input's did.
    c = stems["Center"]
    assert np.abs(c[0] - c[1]).mean() < 0.2 * np.abs(mix[0] - mix[1]).mean()


def test_stems_encoded_side_by_side_match_those_encoded_one_by_one(make_harness):
    """ENCODE_THREADS changes how long the encoding takes, never what the job's files are or their order."""
    mix = stereo_mix(seed=3)
    results = []
    for threads in (1, 4):
        h = make_harness(encode_threads=threads)
        token = h.user()
        hash_value = h.create(token, wav_bytes(mix, subtype="FLOAT"), output_format="2")["data"]["hash"]
        assert h.run_all() == 1
        files = h.get(hash_value)["data"]["files"]
        results.append([(f["type"], h.client.get(f["url"].removeprefix("http://testserver")).content) for f in files])
    assert [kind for kind, _ in results[0]] == ["Center", "Wide"]
    assert results[0] == results[1]
