"""HTDemucs through the engine's front door: a demucs package in the registry serves sep_type 20."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from demucs.apply import apply_model
from demucs.htdemucs import HTDemucs

from openmvsep.engine.models.htdemucs import save_demucs_safetensors
from openmvsep.engine.separator import load_demucs, separate

from conftest import Harness, make_settings, wav_bytes


def tiny_package(path, seed: int = 0) -> HTDemucs:
    torch.manual_seed(seed)
    model = HTDemucs(
        sources=["drums", "bass", "other", "vocals"],
        channels=8,
        depth=2,
        nfft=512,
        t_layers=1,
        t_heads=2,
        segment=1,
        samplerate=44100,
    ).eval()
    save_demucs_safetensors(model, path)
    return model


def test_separate_equals_demucs_apply_model(tmp_path):
    model = tiny_package(tmp_path / "tiny.safetensors")
    loaded = load_demucs(tmp_path / "tiny.safetensors", device="cpu")
    assert loaded.stems == ["drums", "bass", "other", "vocals"]
    mix = (0.2 * np.random.default_rng(0).standard_normal((2, 44100 * 3 + 77))).astype(np.float32)
    ours = separate(loaded, mix, batch_size=4)
    with torch.no_grad():
        reference = apply_model(model, torch.from_numpy(mix)[None], shifts=0, split=True, overlap=0.25)[0].numpy()
    for i, stem in enumerate(loaded.stems):
        noise = np.sum((reference[i] - ours[stem]) ** 2)
        assert noise == 0 or 10 * np.log10(np.sum(reference[i] ** 2) / noise) > 80


def test_htdemucs_job_through_the_api(tmp_path):
    settings = make_settings(tmp_path)
    weights = settings.data_dir / "weights"
    weights.mkdir(parents=True)
    tiny_package(weights / "tiny_htdemucs.safetensors")
    (settings.data_dir / "models.yaml").write_text(
        '- {name: tiny_htdemucs, serves: ["20:1"], model_type: demucs, filename: tiny_htdemucs.safetensors}\n'
    )
    h = Harness(settings)
    try:
        token = h.user()
        mix = (0.2 * np.random.default_rng(1).standard_normal((2, 44100 * 2))).astype(np.float32)
        created = h.create(token, wav_bytes(mix, subtype="FLOAT"), sep_type="20", add_opt1="1")
        assert created["success"] is True, created
        h.run_all()
        done = h.get(created["data"]["hash"])
        assert done["status"] == "done", done
        assert [f["type"] for f in done["data"]["files"]] == ["Drums", "Bass", "Other", "Vocals"]
    finally:
        h.close()
        shutil.rmtree(settings.data_dir, ignore_errors=True)
