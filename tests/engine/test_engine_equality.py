"""Our engine against the reference implementation's own output (fixtures from scripts/make_engine_fixtures.py).

Each fixture holds a shrunk public config, random fp16-representable weights, four inputs (noise shorter than
a chunk, a chirp of exactly one chunk, 2.5 chunks of silence, noise of a length that is no multiple of the
step) and what the reference's `demix` made of them with a batch size of 1 in fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from openmvsep.engine.checkpoints import load_state_dict
from openmvsep.engine.config import load_config
from openmvsep.engine.separator import load_model, separate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "engine"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "cases.npz").is_file()) if FIXTURES.is_dir() else []
MODEL_TYPES = {
    "bs_roformer": "bs_roformer",
    "bs_roformer_variants": "bs_roformer",
    "mel_band_roformer": "mel_band_roformer",
    "mdx23c": "mdx23c",
    "scnet": "scnet",
}


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - estimate) ** 2)
    signal = np.sum(reference.astype(np.float64) ** 2)
    if noise == 0:
        return float("inf")
    if signal == 0:
        return -10 * np.log10(noise + 1e-30)  # silence in: judge the absolute error
    return 10 * np.log10(signal / noise)


def load_fixture(name: str):
    folder = FIXTURES / name
    config = load_config(folder / "config.yaml")
    tensors = {k: v.float() for k, v in load_state_dict(folder / "weights.safetensors").items()}
    loaded = load_model(MODEL_TYPES[name], config, tensors, device="cpu")
    cases = np.load(folder / "cases.npz")
    return loaded, cases


@pytest.fixture(scope="module", params=NAMES)
def fixture(request):
    pytest.importorskip(f"openmvsep.engine.models.{'roformer' if 'roformer' in request.param else request.param}")
    torch.manual_seed(0)
    return request.param, *load_fixture(request.param)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_matches_reference_to_80_db(fixture, batch_size):
    name, loaded, cases = fixture
    for key in [k for k in cases.files if k.startswith("input__")]:
        case = key.split("__", 1)[1]
        ours = separate(loaded, cases[key], batch_size=batch_size, precision="fp32", residual=False)
        for stem, data in ours.items():
            reference = cases[f"output__{case}__{stem}"]
            assert data.shape == reference.shape, (case, stem)
            quality = snr_db(reference, data)
            assert quality >= 80, f"{name}/{case}/{stem}: {quality:.1f} dB (batch {batch_size})"


@pytest.mark.parametrize("precision", ["fp16", "bf16", "auto"])
def test_half_precisions_stay_within_40_db_of_fp32(fixture, precision):
    name, loaded, cases = fixture
    mix = cases["input__noise_odd"]
    full = separate(loaded, mix, precision="fp32", residual=False)
    half = separate(loaded, mix, precision=precision, residual=False)
    for stem in full:
        quality = snr_db(full[stem], half[stem])
        assert quality >= 40, f"{name}/{stem} {precision}: {quality:.1f} dB"


def test_target_models_add_the_residual(fixture):
    name, loaded, cases = fixture
    mix = cases["input__noise_odd"]
    stems = separate(loaded, mix)
    if loaded.target:
        assert set(stems) == {loaded.target, "instrumental"}
        np.testing.assert_allclose(stems[loaded.target] + stems["instrumental"], mix, atol=1e-5)
    else:
        assert list(stems) == list(loaded.config.training.instruments)


def test_fixture_inputs_are_well_conditioned(fixture):
    """A case whose output moves with the input's last bits would compare CPUs' rounding, not implementations:
    a 1e-6 relative change of every input must leave the output above 90 dB."""
    name, loaded, cases = fixture
    rng = np.random.default_rng(0)
    for key in [k for k in cases.files if k.startswith("input__")]:
        mix = cases[key]
        nudged = (mix * (1 + 1e-6 * rng.standard_normal(mix.shape))).astype(np.float32)
        ours = separate(loaded, mix, batch_size=1, precision="fp32", residual=False)
        moved = separate(loaded, nudged, batch_size=1, precision="fp32", residual=False)
        for stem in ours:
            assert snr_db(ours[stem], moved[stem]) >= 90, f"{name}/{key}/{stem}"
