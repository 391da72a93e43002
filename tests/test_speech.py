"""Speech to text (39 Whisper): a checkpoint in the registry makes it runnable; its transcript comes back as text,
SubRip subtitles and JSON segments through the API. The model is a tiny random one the test builds (no download):
what is proven is the loading and the output path, not the words."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from conftest import stereo_mix, wav_bytes

torch = pytest.importorskip("torch")
pytest.importorskip("whisper.model")


def tiny_whisper(path: Path) -> str:
    """A one-layer Whisper with random weights, saved as the package's checkpoints are; returns its sha256."""
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=16,
        n_audio_head=2,
        n_audio_layer=1,
        n_vocab=51865,
        n_text_ctx=32,  # at most 16 tokens a window: a random model never stops on its own
        n_text_state=16,
        n_text_head=2,
        n_text_layer=1,
    )
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def h(make_harness, tmp_path):
    data = tmp_path / "h0" / "data"  # where make_harness puts its first harness
    (data / "weights").mkdir(parents=True)
    sha = tiny_whisper(data / "weights" / "tiny.pt")
    (data / "weights" / "broken.pt").write_bytes(b"not a checkpoint")
    (data / "models.yaml").write_text(
        f'- {{name: tiny_whisper, serves: ["39:0"], model_type: whisper, filename: tiny.pt, sha256: "{sha}"}}\n'
    )
    return make_harness()


def test_whisper_is_runnable_with_its_weights(h):
    algos = {a["render_id"]: a for a in h.client.get("/api/app/algorithms").json()}
    assert algos[39]["is_available"] is True
    keys = {f["name"]: f["available_keys"] for f in algos[39]["algorithm_fields"]}
    assert keys == {"add_opt1": ["0"], "add_opt2": ["1"]}  # no vocal model here; Whisper's own timestamps


def test_a_transcript_comes_back_as_text_subtitles_and_segments(h):
    token = h.user()
    created = h.create(token, wav_bytes(stereo_mix(2.0)), filename="talk.wav", sep_type="39", add_opt1="0")
    assert created["success"] is True, created
    h.run_all()
    done = h.get(created["data"]["hash"])
    assert done["status"] == "done", done
    files = done["data"]["files"]
    assert [f["type"] for f in files] == ["Text", "Subtitles", "Segments"]
    assert [f["download"].rsplit("_", 1)[1] for f in files] == ["text.txt", "subtitles.srt", "segments.json"]
    assert done["data"]["output_format"] == "txt (text), srt (subtitles), json (segments)"
    bodies, types = {}, {}
    for f in files:
        r = h.client.get(f["url"].removeprefix("http://testserver"))
        assert r.status_code == 200 and int(r.headers["content-length"]) == f["bytes"]
        bodies[f["type"]], types[f["type"]] = r.content.decode("utf-8"), r.headers["content-type"]
    assert types == {
        "Text": "text/plain; charset=utf-8",
        "Subtitles": "application/x-subrip",
        "Segments": "application/json",
    }
    segments = json.loads(bodies["Segments"])
    assert set(segments) == {"language", "text", "segments"}
    for s in segments["segments"]:
        assert set(s) == {"start", "end", "text"} and 0 <= s["start"] <= s["end"]
    spoken = [s for s in segments["segments"] if s["text"]]
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n", bodies["Subtitles"])
    assert [int(c[0]) for c in cues] == list(range(1, len(spoken) + 1))
    assert bodies["Text"].strip() == segments["text"].strip()


def test_a_corrupt_checkpoint_or_a_missing_package_fails_the_job_and_the_worker_goes_on(h, monkeypatch):
    mix = wav_bytes(stereo_mix(1.0))
    monkeypatch.setitem(sys.modules, "whisper.model", None)  # `from whisper.model import ...` now fails
    first, second = h.user("a@example.com"), h.user("b@example.com")
    speech = h.create(first, mix, sep_type="39", add_opt1="0")["data"]["hash"]
    centre = h.create(second, mix, sep_type="55", add_opt1="dsp")["data"]["hash"]
    h.run_all()
    failed = h.get(speech)
    assert failed["status"] == "failed" and "pip install 'openmvsep[speech]'" in failed["data"]["message"]
    assert h.get(centre)["status"] == "done"
    monkeypatch.undo()

    # an admin's entry whose file is not a checkpoint (the registry is read again, as a restart would)
    (h.settings.data_dir / "models.yaml").write_text(
        '- {name: broken_whisper, serves: ["39:0"], model_type: whisper, filename: broken.pt}\n'
    )
    from openmvsep.engine.weights import WeightsRegistry

    h.ctx.runtime.registry = WeightsRegistry.for_data_dir(h.settings.data_dir)
    again = h.create(first, mix, sep_type="39", add_opt1="0")["data"]["hash"]
    h.run_all()
    failed = h.get(again)
    assert failed["status"] == "failed" and "broken.pt cannot be loaded" in failed["data"]["message"], failed
