"""Transcribers that run on a fresh install: Basic Pitch (114) and Transkun (113) make MIDI files, which travel
through the API (create -> get -> download), history and retention like stems do."""

from __future__ import annotations

import io
import sys
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import update

from openmvsep.runner.janitor import sweep_expired
from openmvsep.store.db import utcnow
from openmvsep.store.models import Job

from conftest import wav_bytes

mido = pytest.importorskip("mido")
pytest.importorskip("onnxruntime")
pytest.importorskip("basic_pitch.constants")  # the wheel whose ONNX model 114 runs (its __init__ is not ours to run)

RATE = 44100
TOLERANCE = 0.05  # seconds between a sung onset and the transcribed one


def melody(seconds_per_note: float, pitches: list[int], *, start: float, piano: bool) -> tuple[np.ndarray, list]:
    """A mono line of tones of known MIDI pitches, as stereo (2, frames) float32, and its (onset, pitch) list."""
    notes = [(start + i * seconds_per_note, p) for i, p in enumerate(pitches)]
    audio = np.zeros(int(RATE * (notes[-1][0] + seconds_per_note + 0.5)), np.float32)
    length = int(0.85 * seconds_per_note * RATE)
    t = np.arange(length) / RATE
    for onset, pitch in notes:
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        if piano:  # struck string: slightly sharp upper partials, each dying faster than the one below
            partials = [
                0.6**h * np.exp(-(1.5 + h) * t) * np.sin(2 * np.pi * f0 * h * np.sqrt(1 + 4e-4 * h * h) * t)
                for h in range(1, 9)
            ]
        else:
            partials = [np.exp(-2 * t) * np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 4)]
        attack = np.minimum(1.0, t / 0.003)
        first = int(onset * RATE)
        audio[first : first + length] += 0.4 * attack * np.sum(partials, axis=0)
    return np.stack([audio, audio]), notes


def read_notes(midi: bytes) -> list[tuple[float, int]]:
    """(onset in seconds, pitch) of every note of a Standard MIDI File, read back with mido."""
    out, now = [], 0.0
    for message in mido.MidiFile(file=io.BytesIO(midi)):  # iterating yields delta times in seconds
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            out.append((now, message.note))
    return out


def download(h, f: dict) -> tuple[bytes, str]:
    r = h.client.get(f["url"].removeprefix("http://testserver"))
    assert r.status_code == 200
    return r.content, r.headers["content-type"]


@pytest.fixture
def h(make_harness):
    # a short chunk threshold: a long input of a transcriber must still run whole
    return make_harness(chunk_threshold_seconds=2.0, chunk_seconds=2.0, chunk_overlap_seconds=0.5)


def test_fresh_install_lists_both_transcribers_as_available(h):
    algos = {a["render_id"]: a for a in h.client.get("/api/app/algorithms").json()}
    assert algos[114]["is_available"] is True
    assert algos[113]["is_available"] is True
    field = next(f for f in algos[113]["algorithm_fields"] if f["name"] == "add_opt1")
    assert field["available_keys"] == ["0"]  # "extract piano first" needs a piano model


def test_basic_pitch_finds_a_melody_through_the_api(h):
    rng = np.random.default_rng(7)
    mix, truth = melody(0.4, [int(p) for p in rng.integers(52, 84, 20)], start=0.3, piano=False)
    token = h.user()
    created = h.create(token, wav_bytes(mix), filename="My Tune.wav", sep_type="114", output_format="2")
    assert created["success"] is True, created
    assert h.run_all() == 1  # one piece: the 8.8 s input is not cut into 2 s chunks
    done = h.get(created["data"]["hash"])
    assert done["status"] == "done", done
    data = done["data"]
    assert data["output_format"] == "mid (MIDI)"  # not the flac asked for: a MIDI is a MIDI
    [f] = data["files"]
    assert f["type"] == "MIDI"
    assert f["download"] == "my-tune_basicpitch_midi.mid"
    assert f["url"].endswith("_midi.mid") and "?" not in f["url"]
    body, content_type = download(h, f)
    assert content_type == "audio/midi" and f["bytes"] == len(body)
    found = read_notes(body)
    hits = sum(any(p == q and abs(t - s) <= TOLERANCE for s, q in found) for t, p in truth)
    assert hits >= 0.9 * len(truth), (hits, found)
    assert len(found) <= 2 * len(truth)  # a few harmonics at most, not noise

    history = h.client.get("/api/app/separation_history", params={"api_token": token}).json()["data"]
    assert history[0]["hash"] == data["hash"] and history[0]["job_exists"] is True
    # retention: the MIDI goes with the job's other files when it expires
    with h.ctx.db.session() as s:
        s.execute(update(Job).values(expires_at=utcnow() - timedelta(hours=1)))
    assert sweep_expired(h.ctx.db, h.ctx.storage) == 1
    assert h.client.get(f["url"].removeprefix("http://testserver")).status_code == 404


def test_long_file_names_name_the_midi_like_a_stem(h):
    token = h.user()
    h.client.post("/api/app/enable_long_filenames", data={"api_token": token})
    mix, _ = melody(0.4, [60, 64, 67], start=0.2, piano=False)
    created = h.create(token, wav_bytes(mix), filename="take.wav", sep_type="114")
    h.run_all()
    [f] = h.get(created["data"]["hash"])["data"]["files"]
    assert f["download"] == "take_basic-pitch-midi-extraction_default_midi.mid"


def test_a_missing_onnxruntime_fails_the_job_with_the_fix_and_the_worker_goes_on(h, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    first, second = h.user("a@example.com"), h.user("b@example.com")
    mix, _ = melody(0.4, [60, 64], start=0.2, piano=False)
    midi = h.create(first, wav_bytes(mix), sep_type="114")["data"]["hash"]
    centre = h.create(second, wav_bytes(mix), sep_type="55", add_opt1="dsp")["data"]["hash"]
    h.run_all()
    failed = h.get(midi)
    assert failed["status"] == "failed"
    assert "pip install onnxruntime" in failed["data"]["message"]
    assert h.get(centre)["status"] == "done"


def test_transkun_finds_the_pitches_of_a_piano_line(make_harness):
    pytest.importorskip("transkun.ModelTransformer")
    # one 16 s window per stretch instead of the shipped two: a third of the work, for the test's time
    h = make_harness(transkun_hop_seconds=16.0)
    pitches = [60, 64, 67, 72, 69, 65]
    mix, truth = melody(0.7, pitches, start=0.5, piano=True)
    created = h.create(h.user(), wav_bytes(mix), sep_type="113", add_opt1="0", output_format="0")
    assert created["success"] is True, created
    h.run_all()
    done = h.get(created["data"]["hash"])
    assert done["status"] == "done", done
    [f] = done["data"]["files"]
    assert f["type"] == "MIDI" and f["download"].endswith("_midi.mid")
    found = read_notes(download(h, f)[0])
    assert {p for _, p in found} == set(pitches), found
    for onset, pitch in truth:
        assert any(q == pitch and abs(t - onset) <= TOLERANCE for t, q in found), (onset, pitch, found)
