"""What `separate` adds around the chunked model runs: normalisation, mono, TTA, residuals, mono models."""

from __future__ import annotations

import numpy as np
import torch

from openmvsep.engine.config import parse_config
from openmvsep.engine.separator import LoadedModel, separate


class Affine(torch.nn.Module):
    """out = gain·x + bias per channel: shift-equivariant, so the chunking is invisible in the output."""

    def __init__(self, gain: float = 0.5, bias: float = 0.0, channels: int = 2):
        super().__init__()
        self.gain, self.bias, self.channels = gain, bias, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == self.channels
        return self.gain * x + self.bias


def model(module: torch.nn.Module, extra: str = "", target: str | None = None) -> LoadedModel:
    config = parse_config(
        f"audio: {{chunk_size: 4410, sample_rate: 44100}}\ninference: {{num_overlap: 2}}\n"
        f"training: {{instruments: [vocals, other]}}\n{extra}"
    )
    return LoadedModel("custom", config, module, torch.device("cpu"), stems=[target or "vocals"], target=target)


MIX = (0.3 * np.random.default_rng(0).standard_normal((2, 20000)) + 0.1).astype(np.float32)


def test_plain_chunked_run_is_exact():
    np.testing.assert_allclose(separate(model(Affine()), MIX)["vocals"], 0.5 * MIX, atol=1e-6)


def test_normalize_wraps_the_model_in_the_mix_statistics():
    out = separate(model(Affine(bias=1.0), "inference: {num_overlap: 2, normalize: true}"), MIX)["vocals"]
    mono = MIX.mean(axis=0)
    mean, std = mono.mean(), mono.std()
    expected = (0.5 * (MIX - mean) / std + 1.0) * std + mean
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_mono_input_to_a_stereo_model_comes_back_mono():
    out = separate(model(Affine()), MIX[:1])["vocals"]
    assert out.shape == (1, MIX.shape[1])
    np.testing.assert_allclose(out, 0.5 * MIX[:1], atol=1e-6)


def test_mono_model_runs_each_channel():
    out = separate(model(Affine(channels=1), "model: {stereo: false}"), MIX)["vocals"]
    np.testing.assert_allclose(out, 0.5 * MIX, atol=1e-6)


def test_tta_of_an_odd_model_is_the_model():
    # swap and polarity passes undo themselves for an odd, channel-symmetric model
    np.testing.assert_allclose(separate(model(Affine()), MIX, tta=True)["vocals"], 0.5 * MIX, atol=1e-6)
    # a bias is even: the polarity pass cancels a third of it
    out = separate(model(Affine(bias=0.3)), MIX, tta=True)["vocals"]
    np.testing.assert_allclose(out, 0.5 * MIX + 0.1, atol=1e-6)


def test_target_model_adds_residual():
    stems = separate(model(Affine(), target="vocals"), MIX)
    assert list(stems) == ["vocals", "instrumental"]
    np.testing.assert_allclose(stems["instrumental"], 0.5 * MIX, atol=1e-6)


def test_compiled_model_gives_the_same_stems():
    from openmvsep.engine.separator import load_model

    config = parse_config(
        "audio: {chunk_size: 4410, sample_rate: 44100}\ninference: {num_overlap: 2}\n"
        "training: {instruments: [vocals, other]}\n"
        "model: {dim: 8, depth: 1, heads: 1, dim_head: 8, stereo: true, num_bands: 8,\n"
        "        stft_hop_length: 441}\n"
    )
    torch.manual_seed(0)
    eager = load_model("mel_band_roformer", config, device="cpu")
    # aot_eager traces and partitions the graph like inductor does, without minutes of C++ code generation
    compiled = load_model(
        "mel_band_roformer", config, dict(eager.model.state_dict()), device="cpu", compile="aot_eager"
    )
    a = separate(eager, MIX[:, :8820], batch_size=2)
    b = separate(compiled, MIX[:, :8820], batch_size=2)
    for stem in a:
        np.testing.assert_allclose(a[stem], b[stem], atol=1e-4)


def test_automatic_batch_size():
    """0 leaves the batch to the engine: one chunk per call on CPU, a few elsewhere; an
    explicit size is always honoured."""
    from types import SimpleNamespace

    from openmvsep.engine.separator import AUTO_GPU_BATCH, _batch_size

    def loaded(device: str, model_type: str) -> SimpleNamespace:
        return SimpleNamespace(device=torch.device(device), model_type=model_type)

    assert _batch_size(loaded("cpu", "mel_band_roformer"), 0) == 1
    assert _batch_size(loaded("cpu", "htdemucs"), 0) == 1
    assert _batch_size(loaded("meta", "htdemucs"), 0) == AUTO_GPU_BATCH
    assert _batch_size(loaded("meta", "mdx23c"), 0) == AUTO_GPU_BATCH
    assert _batch_size(loaded("cpu", "mdx23c"), 3) == 3
