"""BS-RoFormer / Mel-Band RoFormer: shapes, config validation, key layout, numerics.

The golden numbers below were computed with the reference implementation (msst 0.1.0) on tiny models
whose weights are set by `_fill` (a deterministic function of the sorted state_dict keys), so these
tests pin our output to the reference without needing it installed (scripts/make_roformer_golden.py).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from openmvsep.engine.config import ConfigError, parse_config
from openmvsep.engine.models.roformer import (
    DEFAULT_FREQS_PER_BANDS,
    BSRoformer,
    MelBandRoformer,
    bs_roformer_from_config,
    mel_band_roformer_from_config,
    slaney_mel_filterbank,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread is fastest, and immune to a busy machine's thread wake-ups."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


BASE = dict(
    dim=16, depth=1, heads=2, dim_head=8, time_transformer_depth=1, freq_transformer_depth=1,
    stft_n_fft=256, stft_hop_length=64, stft_win_length=256,
)  # fmt: skip
BS_BANDS = (4,) * 8 + (8,) * 4 + (16,) * 2 + (33,)  # 129 bins of n_fft 256

# name: (family, model kwargs, active_stem_ids, reference facts)
GOLDEN = {
    "bs_stereo_two_stems_linear": (
        "bs",
        dict(BASE, stereo=True, num_stems=2, linear_transformer_depth=1, mask_estimator_depth=2,
             mlp_expansion_factor=2, freqs_per_bands=BS_BANDS),
        None,
        dict(shape=(1, 2, 2, 2000), keys=197, abs_sum=2118.9242545654706, sq_sum=898.8424182481378,
             key_hash="60ca84f0259befb96e6ce2a6186727c19e7316c577ee89f53ea6f7f2f953eb8e",
             samples={0: -0.04575909301638603, 1333: 0.09922239929437637, 2666: 0.7705854773521423,
                      4000: -0.018402110785245895, 5333: -0.3811263144016266, 6666: 0.6168432235717773,
                      7999: 0.10491016507148743}),
    ),
    "mel_stereo_skip": (
        "mel",
        dict(BASE, stereo=True, depth=2, skip_connection=True, num_bands=12, sample_rate=16000,
             mask_estimator_depth=1),
        None,
        dict(shape=(1, 2, 1984), keys=132, abs_sum=314.0982406866169, sq_sum=39.223484219081286,
             key_hash="e0f2a9e375836335c1fc89132c6fe5f165b4945e0bae2085450d58e75581fde4",
             samples={0: 0.0953621119260788, 661: 0.009094432927668095, 1322: 0.033326178789138794,
                      1984: 0.02133840322494507, 2645: 0.040190715342760086, 3306: 0.037581730633974075,
                      3967: 0.061958979815244675}),
    ),
    "bs_mono_pope": (
        "bs",
        dict(BASE, stereo=False, use_pope=True, zero_dc=False, mask_estimator_depth=3, freqs_per_bands=BS_BANDS),
        None,
        dict(shape=(1, 1, 1, 2000), keys=160, abs_sum=202.50696768594207, sq_sum=30.789490624642752,
             key_hash="c8e5a119c4a6f4196df2ba59c1cb8028a289489e15a39c776d40ffe6ca57979c",
             samples={0: -0.19937510788440704, 333: -0.12897954881191254, 666: -0.15917880833148956,
                      1000: -0.19429615139961243, 1333: 0.05129975080490112, 1666: 0.21993054449558258,
                      1999: -0.0010228846222162247}),
    ),
    "mel_mono_two_stems_linear": (
        "mel",
        dict(BASE, stereo=False, num_stems=2, linear_transformer_depth=1, mask_estimator_depth=0, num_bands=12,
             sample_rate=16000),
        [1],
        dict(shape=(1, 1, 1984), keys=118, abs_sum=395.80571251494985, sq_sum=121.57527755902566,
             key_hash="908fdb046f19e4a0d69ea1f91bf2606964582a061f69b7ebbc759d2a4a3bb046",
             samples={0: 0.3131788671016693, 330: 0.3168427646160126, 661: 0.013295930810272694,
                      992: 0.09470668435096741, 1322: 0.17893442511558533, 1652: -0.14358584582805634,
                      1983: -0.2727936804294586}),
    ),
}  # fmt: skip


def _build(family: str, kwargs: dict) -> torch.nn.Module:
    return (BSRoformer if family == "bs" else MelBandRoformer)(**kwargs).eval()


def _fill(model: torch.nn.Module) -> None:
    """Deterministic weights from the sorted key list (RoPE/PoPE frequency constants kept)."""
    with torch.no_grad():
        for i, (name, t) in enumerate(sorted(model.state_dict().items())):
            if name.endswith("freqs"):
                continue
            values = torch.sin(torch.arange(t.numel(), dtype=torch.float64) * 0.731 + i * 1.3)
            if name.endswith("gamma"):
                values = 1.0 + 0.2 * values
            elif t.ndim == 2:
                values = values * (1.5 / math.sqrt(t.shape[1]))
            else:
                values = values * 0.3
            t.copy_(values.view(t.shape))


def _audio(channels: int, samples: int = 2000, phase: float = 0.0) -> torch.Tensor:
    """Two tones over a low noise floor. Without the floor, bands between the tones hold only rounding noise,
    which the per-band RMS norms amplify: the output would then depend on the CPU's rounding."""
    t = torch.arange(samples, dtype=torch.float64)
    floor = 0.02 * torch.randn(channels, samples, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    rows = [
        0.5 * torch.sin(2 * math.pi * 440 * t / 16000 + c + phase)
        + 0.3 * torch.sin(2 * math.pi * 2345.6 * t / 16000 + 0.1 * t * t / samples)
        + floor[c]
        for c in range(channels)
    ]
    return torch.stack(rows).unsqueeze(0).float()


def _snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    noise = ((reference.double() - estimate.double()) ** 2).sum().item()
    return 10 * math.log10((reference.double() ** 2).sum().item() / max(noise, 1e-300))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_matches_reference_golden_output(name: str) -> None:
    family, kwargs, active, facts = GOLDEN[name]
    model = _build(family, kwargs)
    keys = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(model.state_dict().items()))
    assert len(model.state_dict()) == facts["keys"]
    assert hashlib.sha256(keys.encode()).hexdigest() == facts["key_hash"], "state_dict layout differs"
    _fill(model)
    with torch.inference_mode():
        out = model(_audio(2 if kwargs["stereo"] else 1), active_stem_ids=active)
    assert tuple(out.shape) == facts["shape"]
    assert out.dtype == torch.float32
    flat = out.flatten().double()
    assert flat.abs().sum().item() == pytest.approx(facts["abs_sum"], rel=1e-5)
    assert (flat**2).sum().item() == pytest.approx(facts["sq_sum"], rel=1e-5)
    # Sampled values within 1e-4 of themselves or of the output's RMS: a small sample's last digits follow the
    # processor's GEMM kernels (on an AVX2-only AMD EPYC one of 0.018 in the linear-attention case is 2.3e-6 off),
    # while a wrong computation misses by orders of magnitude more.
    rms = math.sqrt(facts["sq_sum"] / flat.numel())
    for index, value in facts["samples"].items():
        assert flat[index].item() == pytest.approx(value, rel=1e-4, abs=1e-4 * rms)


def test_mel_filterbank_matches_librosa_band_sizes() -> None:
    # Band sizes of librosa.filters.mel(sr=44100, n_fft=2048, n_mels=60) > 0, with [0,0] and [-1,-1] forced.
    expected = [7, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 9, 9, 9, 10, 10, 11, 13, 13, 13, 15, 16, 17,
                19, 20, 20, 22, 24, 26, 28, 29, 31, 33, 36, 39, 41, 44, 47, 50, 54, 57, 61, 66, 71, 76, 80, 86, 93,
                99, 105, 113, 122, 130]  # fmt: skip
    bank = slaney_mel_filterbank(44100, 2048, 60).copy()  # shared and read-only
    assert bank.dtype == np.float32 and bank.shape == (60, 1025)
    bank[0, 0] = bank[-1, -1] = 1.0
    assert (bank > 0).sum(axis=1).tolist() == expected
    assert (bank > 0).sum() == 1979
    # Slaney normalisation: each triangle's area in Hz is 1.
    hz_step = 44100 / 2048
    assert np.allclose(slaney_mel_filterbank(44100, 2048, 60)[10:50].sum(axis=1) * hz_step, 1.0, atol=0.05)


def test_public_config_shapes_and_reference_defaults() -> None:
    text = """
model:
  dim: 32
  depth: 1
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  freqs_per_bands: !!python/tuple [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 12, 12, 12, 12, 12, 12, 12, 12, 24, 24, 24, 24, 24, 24, 24, 24,
    48, 48, 48, 48, 48, 48, 48, 48, 128, 129]
  dim_head: 16
  heads: 2
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  sage_attention: true
  use_torch_checkpoint: true
  dim_freqs_in: 1025
  stft_n_fft: 2048
  stft_hop_length: 441
  stft_win_length: 2048
  stft_normalized: false
  mask_estimator_depth: 2
  multi_stft_resolution_loss_weight: 1.0
  multi_stft_resolutions_window_sizes: !!python/tuple [4096, 2048, 1024, 512, 256]
  multi_stft_hop_size: 147
  multi_stft_normalized: False
  some_future_key: 3
training:
  instruments: [vocals, other]
  target_instrument: vocals
"""
    model = bs_roformer_from_config(parse_config(text)).eval()
    assert model.freqs_per_bands == DEFAULT_FREQS_PER_BANDS
    assert model.zero_dc is True  # the reference default
    assert "final_norm.gamma" in model.state_dict()
    assert len(model.band_split.to_features) == 62
    with torch.inference_mode():
        out = model(torch.randn(1, 2, 4410))
    assert out.shape == (1, 1, 2, 4410)


def test_mel_defaults_and_norm_placement() -> None:
    model = MelBandRoformer(16, depth=1, stereo=True, num_bands=12, sample_rate=16000, heads=2, dim_head=8,
                            stft_n_fft=256, stft_hop_length=64, stft_win_length=256)  # fmt: skip
    keys = model.state_dict().keys()
    assert "final_norm.gamma" not in keys
    assert "layers.0.0.norm.gamma" in keys and "layers.0.1.norm.gamma" in keys
    # mask_estimator_depth defaults to 1 for Mel, which is two Linear layers there.
    assert "mask_estimators.0.to_freqs.0.0.2.weight" in keys
    assert "mask_estimators.0.to_freqs.0.0.4.weight" not in keys
    assert not any(k.startswith(("band_split._", "_")) for k in keys)  # helper buffers are not persistent


def test_state_dict_round_trip_is_strict_and_exact() -> None:
    family, kwargs, _, _ = GOLDEN["bs_stereo_two_stems_linear"]
    torch.manual_seed(0)
    first = _build(family, kwargs)
    torch.manual_seed(1)
    second = _build(family, kwargs)
    second.load_state_dict(first.state_dict(), strict=True)
    x = _audio(2)
    with torch.inference_mode():
        assert torch.equal(first(x), second(x))
    with pytest.raises(RuntimeError):
        broken = dict(first.state_dict())
        broken.pop("final_norm.gamma")
        second.load_state_dict(broken, strict=True)


def test_deterministic_and_batch_independent() -> None:
    family, kwargs, _, _ = GOLDEN["mel_stereo_skip"]
    model = _build(family, kwargs)
    _fill(model)
    batch = torch.cat([_audio(2, phase=0.0), _audio(2, phase=1.0), _audio(2, phase=2.0)])
    with torch.inference_mode():
        alone = model(batch[1:2])
        again = model(batch[1:2])
        together = model(batch)
    assert torch.equal(alone, again)
    assert _snr_db(alone[0], together[1]) > 100
    assert torch.allclose(alone[0], together[1], atol=1e-5 * alone.abs().max().item())


def test_active_stem_ids_select_heads() -> None:
    family, kwargs, _, _ = GOLDEN["bs_stereo_two_stems_linear"]
    model = _build(family, kwargs)
    _fill(model)
    x = _audio(2)
    with torch.inference_mode():
        full = model(x)
        only_second = model(x, active_stem_ids=[1])
        swapped = model(x, active_stem_ids=[1, 0])
    assert only_second.shape == (1, 1, 2, 2000)
    assert torch.allclose(only_second[:, 0], full[:, 1], atol=1e-6)
    assert torch.allclose(swapped.flip(1), full, atol=1e-6)
    with pytest.raises(ValueError):
        model(x, active_stem_ids=[2])

    mel = MelBandRoformer(16, depth=1, stereo=True, num_stems=3, num_bands=12, sample_rate=16000, heads=2,
                          dim_head=8, stft_n_fft=256, stft_hop_length=64, stft_win_length=256).eval()  # fmt: skip
    with torch.inference_mode():
        assert mel(x).shape == (1, 3, 2, 1984)
        assert mel(x, active_stem_ids=[2]).shape == (1, 2, 1984)  # one head: stem axis dropped, as the reference


def test_mono_models_take_one_channel() -> None:
    family, kwargs, _, _ = GOLDEN["bs_mono_pope"]
    model = _build(family, kwargs)
    _fill(model)
    x = _audio(1)
    with torch.inference_mode():
        with_channel = model(x)
        without_channel = model(x[:, 0])
    assert with_channel.shape == (1, 1, 1, 2000)
    assert torch.equal(with_channel, without_channel)
    with pytest.raises(ValueError, match="mono"):
        model(_audio(2))
    stereo = _build(*GOLDEN["mel_stereo_skip"][:2])
    with pytest.raises(ValueError, match="stereo"):
        stereo(x)


def test_length_rules() -> None:
    bs = _build(*GOLDEN["bs_mono_pope"][:2])
    mel_kwargs = dict(GOLDEN["mel_stereo_skip"][1], depth=1)
    mel = _build("mel", mel_kwargs)
    matched = _build("mel", dict(mel_kwargs, match_input_audio_length=True))
    with torch.inference_mode():
        assert bs(torch.zeros(1, 1, 1999)).shape[-1] == 1999
        assert mel(torch.zeros(1, 2, 1999)).shape[-1] == 64 * (1999 // 64)  # hop · (frames − 1)
        assert matched(torch.zeros(1, 2, 1999)).shape[-1] == 1999


def test_zero_dc_removes_only_the_dc_bin() -> None:
    kwargs = dict(GOLDEN["bs_mono_pope"][1], use_pope=False)
    on, off = _build("bs", dict(kwargs, zero_dc=True)), _build("bs", dict(kwargs, zero_dc=False))
    _fill(on)
    off.load_state_dict(on.state_dict())
    x = _audio(1, samples=4096) + 0.5  # a strong DC offset
    with torch.inference_mode():
        removed = (off(x) - on(x))[0, 0, 0].double()
    # What zero_dc takes away is the iSTFT of the DC bin alone: a slowly varying signal, far below the
    # Hann window's main lobe (2 bins of n_fft 256 = 64 bins of this 4096-sample FFT).
    energy = torch.fft.rfft(removed).abs() ** 2
    assert energy.sum() > 1.0
    assert energy[:64].sum() / energy.sum() > 0.999


def test_low_precision_runs_on_cpu() -> None:
    family, kwargs, _, _ = GOLDEN["bs_stereo_two_stems_linear"]
    model = _build(family, kwargs)
    _fill(model)
    x = _audio(2)
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_out = model(x)
        model.to(torch.bfloat16)
        rotary = model.layers[0][1].layers[0][0].rotary_embed
        assert rotary.freqs.dtype == torch.float32  # RoPE constants survive the cast
        cast_out = model(x)
    for out in (autocast_out, cast_out):
        assert out.dtype == torch.float32 and out.shape == reference.shape
        assert torch.isfinite(out).all()
        assert _snr_db(reference, out) > 20


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dim=None), "dim"),
        (dict(depth=0), "depth"),
        (dict(dim_head=7), "dim_head"),
        (dict(heads="8"), "heads"),
        (dict(stereo="yes"), "stereo"),
        (dict(freqs_per_bands=(4, 4)), "freqs_per_bands"),
        (dict(freqs_per_bands="4,4"), "freqs_per_bands"),
        (dict(stft_win_length=512), "stft_win_length"),
        (dict(mask_estimator_depth=-1), "mask_estimator_depth"),
        (dict(mlp_expansion_factor=1.5), "mlp_expansion_factor"),
        (dict(stft_window_fn="hann"), "stft_window_fn"),
    ],
)
def test_invalid_bs_configs_raise_config_error(change: dict, message: str) -> None:
    model = dict(GOLDEN["bs_mono_pope"][1])
    model.update(change)
    if model.get("dim") is None:
        model.pop("dim")
    with pytest.raises(ConfigError, match=message):
        bs_roformer_from_config({"model": model})


def test_invalid_mel_configs_and_sections_raise_config_error() -> None:
    good = dict(GOLDEN["mel_stereo_skip"][1])
    with pytest.raises(ConfigError, match="num_bands"):
        mel_band_roformer_from_config({"model": dict(good, num_bands=0)})
    with pytest.raises(ConfigError, match="sample_rate"):
        mel_band_roformer_from_config({"model": dict(good, sample_rate=0)})
    with pytest.raises(ConfigError, match="model"):
        mel_band_roformer_from_config({"training": {}})
    with pytest.raises(ConfigError, match="depth"):
        mel_band_roformer_from_config({"model": {"dim": 8}})
    model = _build(*GOLDEN["mel_stereo_skip"][:2])
    with pytest.raises(ValueError, match="inference engine"):
        model(_audio(2), target=_audio(2))
