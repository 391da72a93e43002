"""MDX23C (TFC-TDF v3) and SCNet model families: construction from MSST configs, checkpoint layout,
output conventions, batch independence, dtypes and config validation.

Full equality with the reference implementation is checked by the integrator's fixture pipeline (it needs
the oracle venv). Without it, these tests pin: the checkpoint layout of the public configs (a digest of the
reference's state_dict keys and shapes), the reference's outputs for two tiny models with deterministic
weights (fingerprints computed with msst 0.1.0), and the places where our code computes something
differently from the reference (fused convolution, instance norm via group norm) against the direct formula.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from openmvsep.engine.config import Config, ConfigError, parse_config
from openmvsep.engine.models import mdx23c, scnet

# The model-relevant sections of the public MSST configs (reference/msst-configs/*.yaml), inline so that the
# tests need no files outside the repository.
MDX23C_MODEL = """
audio: {chunk_size: 261120, dim_f: 4096, dim_t: 256, hop_length: 1024, n_fft: 8192, num_channels: 2,
        sample_rate: 44100, min_mean_abs: 0.001}
model: {act: gelu, bottleneck_factor: 4, growth: 128, norm: InstanceNorm, num_blocks_per_scale: 2,
        num_channels: 128, num_scales: 5, num_subbands: 4, scale: [2, 2]}
inference: {batch_size: 1, dim_t: 256, num_overlap: 4}
"""
PUBLIC_CONFIGS = {
    "config_vocals_mdx23c.yaml": MDX23C_MODEL
    + """
training: {instruments: [vocals, other], target_instrument: null, use_amp: true}
""",
    "config_musdb18_mdx23c.yaml": MDX23C_MODEL
    + """
training: {instruments: [vocals, bass, drums, other], target_instrument: null, use_amp: true}
""",
    "config_musdb18_scnet.yaml": """
audio: {chunk_size: 485100, num_channels: 2, sample_rate: 44100, min_mean_abs: 0.000}
model:
  sources: [drums, bass, other, vocals]
  audio_channels: 2
  dims: [4, 32, 64, 128]
  nfft: 4096
  hop_size: 1024
  win_size: 4096
  normalized: True
  band_SR: [0.175, 0.392, 0.433]
  band_stride: [1, 4, 16]
  band_kernel: [3, 4, 16]
  conv_depths: [3, 2, 1]
  compress: 4
  conv_kernel: 3
  num_dplayer: 6
  expand: 1
training: {instruments: [drums, bass, other, vocals], target_instrument: null}
inference: {batch_size: 8, dim_t: 256, num_overlap: 4, normalize: true}
""",
    "config_musdb18_scnet_large.yaml": """
audio: {chunk_size: 485100, num_channels: 2, sample_rate: 44100, min_mean_abs: 0.000}
model:
  sources: [drums, bass, other, vocals]
  audio_channels: 2
  dims: [4, 64, 128, 256]
  nfft: 4096
  hop_size: 1024
  win_size: 4096
  normalized: True
  band_SR: [0.225, 0.372, 0.403]
  band_stride: [1, 4, 16]
  band_kernel: [3, 4, 16]
  conv_depths: [3, 2, 1]
  compress: 4
  conv_kernel: 3
  num_dplayer: 6
  expand: 1
training: {instruments: [drums, bass, other, vocals], target_instrument: null}
inference: {batch_size: 8, dim_t: 256, num_overlap: 4, normalize: false}
""",
}

# (state_dict entries, parameter+buffer elements without BatchNorm counters, sha256 of "key:shape" lines)
# measured on the reference models (msst 0.1.0) built from the public configs.
REFERENCE_LAYOUT = {
    "config_vocals_mdx23c.yaml": (319, 111990272, "753203f2859f34a3cd226a4c140c48fe997cfdd96e3deadcd70c826cf263cf8e"),
    "config_musdb18_mdx23c.yaml": (319, 111994368, "60c91d1166b6f0f9a7f709f067f40f68dc1a5470bd0b6c368db3f97e5444a018"),
    "config_musdb18_scnet.yaml": (372, 10578768, "b25d834850e92f5a6ccccdb1476e4607fb5c5fdb35db93078575635a7e3ecc84"),
    "config_musdb18_scnet_large.yaml": (
        372,
        42181232,
        "4a735fa54a917ca1461c6280c7ccb585ff7ac111302b8d374113ca0281b6ce24",
    ),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: these small models gain nothing from more, and on a busy CI machine torch's
    thread pool can make them tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def public_config(name: str) -> Config:
    return parse_config(PUBLIC_CONFIGS[name])


def layout(model: nn.Module) -> tuple[int, int, str]:
    state = model.state_dict()
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items()))
    elements = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    return len(state), elements, hashlib.sha256(text.encode()).hexdigest()


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Give norms non-trivial affine maps and running statistics (fresh ones are identities)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not value.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean") or (name.endswith("bias") and value.dim() == 1):
                value.copy_(0.1 * torch.randn(value.shape, generator=generator))
            elif name.endswith("weight") and value.dim() == 1:
                value.copy_(1 + 0.2 * torch.randn(value.shape, generator=generator))
    return model.eval()


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    error = (reference - estimate).pow(2).sum().clamp_min(1e-30)
    return float(10 * torch.log10(reference.pow(2).sum() / error))


def deterministic_weights(model: nn.Module) -> nn.Module:
    """Fill every floating-point entry from one seeded generator, key by key in sorted order, so that the
    same weights can be given to the reference implementation (no dependence on init order)."""
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, value in sorted(model.state_dict().items()):
            if not value.dtype.is_floating_point:
                continue
            if value.dim() > 1:
                value.copy_(torch.randn(value.shape, generator=generator) / value[0].numel() ** 0.5)
            elif name.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif name.endswith("weight"):
                value.copy_(1 + 0.1 * torch.randn(value.shape, generator=generator))
            else:
                value.copy_(0.1 * torch.randn(value.shape, generator=generator))
    return model.eval()


def chord(channels: int, samples: int) -> torch.Tensor:
    """A deterministic test signal: a few sines per channel plus a click, shape (1, channels, samples)."""
    t = torch.arange(samples, dtype=torch.float64) / 44100
    rows = [
        0.3 * torch.sin(2 * torch.pi * (220 * (c + 1)) * t) + 0.2 * torch.sin(2 * torch.pi * 3150 * t + c)
        for c in range(channels)
    ]
    audio = torch.stack(rows)
    audio[:, samples // 3] += 0.5
    return audio.float().unsqueeze(0)


def fingerprint(out: torch.Tensor) -> list[float]:
    """RMS and twelve evenly spaced samples of an output."""
    flat = out.flatten().double()
    picks = flat[:: max(1, flat.numel() // 12)][:12]
    return [float(flat.pow(2).mean().sqrt()), *map(float, picks)]


# Tiny models whose outputs were computed by the reference implementation (msst 0.1.0, fp32, CPU) with the
# weights of `deterministic_weights` on `chord` input; the values are `fingerprint`s of those outputs.
TINY_MDX23C = """
audio: {n_fft: 1024, hop_length: 256, dim_f: 256, num_channels: 2}
model: {act: gelu, bottleneck_factor: 2, growth: 4, norm: InstanceNorm, num_blocks_per_scale: 1,
        num_channels: 8, num_scales: 2, num_subbands: 2, scale: [2, 2]}
training: {instruments: [vocals, other], target_instrument: null}
"""
TINY_MDX23C_SAMPLES = 15 * 256
TINY_SCNET = """
model: {sources: [drums, bass, other, vocals], audio_channels: 2, dims: [4, 8, 12], nfft: 512, hop_size: 128,
        win_size: 512, normalized: true, band_SR: [0.175, 0.392, 0.433], band_stride: [1, 4, 16],
        band_kernel: [3, 4, 16], conv_depths: [2, 1, 1], compress: 4, conv_kernel: 3, num_dplayer: 2, expand: 1}
"""
TINY_SCNET_SAMPLES = 2000
REFERENCE_FINGERPRINTS = {  # output shapes: mdx23c (1, 2, 2, 3840), scnet (1, 4, 2, 2000)
    "mdx23c": [
        0.41882907,
        0.042414308,
        -0.029971024,
        -0.49747387,
        0.512299,
        -0.31559744,
        -0.40328074,
        1.5037737,
        0.27661869,
        -0.66851777,
        -0.65813929,
        0.67213935,
        1.4038782,
    ],
    "scnet": [
        0.10398053,
        -0.24976908,
        -0.073689766,
        -0.050970074,
        0.068591565,
        0.060064916,
        -0.0072094928,
        0.022261132,
        -0.044916369,
        -0.04712031,
        -0.020906139,
        0.0088523794,
        0.024922594,
    ],
}


@pytest.mark.parametrize("family", ["mdx23c", "scnet"])
def test_tiny_models_reproduce_the_reference_output(family: str) -> None:
    if family == "mdx23c":
        model = deterministic_weights(mdx23c.from_config(parse_config(TINY_MDX23C)))
        x = chord(2, TINY_MDX23C_SAMPLES)
    else:
        model = deterministic_weights(scnet.from_config(parse_config(TINY_SCNET)))
        x = chord(2, TINY_SCNET_SAMPLES)
    with torch.inference_mode():
        out = model(x)
    assert out.shape == ((1, 2, 2, 3840) if family == "mdx23c" else (1, 4, 2, 2000))
    expected = REFERENCE_FINGERPRINTS[family]
    assert fingerprint(out) == pytest.approx(expected, rel=1e-4, abs=1e-6 * expected[0])


# ---------------------------------------------------------------- MDX23C


def small_mdx23c_config(**changes: object) -> Config:
    """The public vocals config with fewer channels and scales (same STFT, subbands, norm and act)."""
    config = public_config("config_vocals_mdx23c.yaml")
    config.model.num_channels = 8
    config.model.growth = 8
    config.model.num_scales = 2
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


HOP = 1024
MDX_SAMPLES = 15 * HOP  # 16 STFT frames, divisible by 2 ** num_scales


@pytest.mark.parametrize("name", ["config_vocals_mdx23c.yaml", "config_musdb18_mdx23c.yaml"])
def test_mdx23c_public_configs_have_the_reference_checkpoint_layout(name: str) -> None:
    with torch.device("meta"):
        model = mdx23c.from_config(public_config(name))
    assert layout(model) == REFERENCE_LAYOUT[name]


@pytest.mark.parametrize(
    ("changes", "stems"),
    [
        ({}, 2),  # vocals config: instruments [vocals, other]
        ({"training__instruments": ["vocals", "bass", "drums", "other"]}, 4),
        ({"training__target_instrument": "vocals"}, 1),  # a target means a single output stem
    ],
)
def test_mdx23c_output_shape_follows_the_stem_rule(changes: dict, stems: int) -> None:
    model = randomise(mdx23c.from_config(small_mdx23c_config(**changes)), 0)
    with torch.inference_mode():
        out = model(noise(2, 2, MDX_SAMPLES + 100))
    # Four-dimensional even for one stem; the length is cut to whole hops (no istft length, as the reference).
    assert out.shape == (2, stems, 2, MDX_SAMPLES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("norm", "act"), [("InstanceNorm", "gelu"), ("BatchNorm", "relu"), ("GroupNorm4", "elu1.0"), ("none", "elu")]
)
def test_mdx23c_norm_and_act_variants_round_trip_their_state_dict(norm: str, act: str) -> None:
    config = small_mdx23c_config(model__norm=norm, model__act=act)
    torch.manual_seed(0)
    first = randomise(mdx23c.from_config(config), 1)
    second = mdx23c.from_config(config).eval()
    second.load_state_dict(first.state_dict(), strict=True)
    x = noise(1, 2, MDX_SAMPLES, seed=3)
    with torch.inference_mode():
        a, b = first(x), second(x)
        again = first(x)
    assert torch.equal(a, b)
    assert torch.equal(a, again)  # deterministic
    norms = {type(m) for m in first.modules()}
    expected = {"InstanceNorm": mdx23c.InstanceNorm, "BatchNorm": nn.BatchNorm2d, "GroupNorm4": nn.GroupNorm}
    if norm in expected:
        assert expected[norm] in norms
    else:
        assert not norms & {mdx23c.InstanceNorm, nn.BatchNorm2d, nn.GroupNorm}


def test_mdx23c_instance_norm_equals_torch_instance_norm() -> None:
    ours = mdx23c.InstanceNorm(6)
    theirs = nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        ours.weight.copy_(torch.linspace(0.5, 2, 6))
        ours.bias.copy_(torch.linspace(-1, 1, 6))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = noise(3, 6, 7, 11) + torch.arange(6.0).view(1, 6, 1, 1)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_mdx23c_batch_items_are_independent() -> None:
    model = randomise(mdx23c.from_config(small_mdx23c_config(model__norm="BatchNorm")), 2)
    batch = noise(3, 2, MDX_SAMPLES, seed=4)
    with torch.inference_mode():
        together = model(batch)
        alone = model(batch[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-6)


def test_mdx23c_spectrogram_round_trip_reconstructs_audio() -> None:
    spectrogram = mdx23c.Spectrogram(n_fft=512, hop_length=128, dim_f=257)
    audio = noise(2, 2, 128 * 20, seed=5)
    back = spectrogram.inverse(spectrogram(audio).unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(back, audio, rtol=0, atol=1e-5)


def test_mdx23c_mono_config() -> None:
    model = randomise(mdx23c.from_config(small_mdx23c_config(audio__num_channels=1)), 0)
    with torch.inference_mode():
        out = model(noise(1, 1, MDX_SAMPLES))
    assert out.shape == (1, 2, 1, MDX_SAMPLES)
    with pytest.raises(ValueError, match="expected"):
        model(noise(1, 2, MDX_SAMPLES))


def test_mdx23c_rejects_frame_counts_the_unet_cannot_halve() -> None:
    model = mdx23c.from_config(small_mdx23c_config()).eval()
    with pytest.raises(ValueError, match="multiple of 4"):
        model(noise(1, 2, 16 * HOP))  # 17 frames


def test_mdx23c_bfloat16_runs_close_to_float32() -> None:
    model = randomise(mdx23c.from_config(small_mdx23c_config()), 6)
    x = noise(1, 2, MDX_SAMPLES, seed=7)
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(x)
        native = copy.deepcopy(model).to(torch.bfloat16)(x.to(torch.bfloat16))
    assert autocast.dtype == torch.float32 and native.dtype == torch.bfloat16
    assert native.shape == reference.shape
    assert snr_db(reference, autocast) > 15
    assert snr_db(reference, native.float()) > 15


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"audio__n_fft": None}, "audio.n_fft"),
        ({"audio__dim_f": 5000}, "exceeds"),
        ({"model__num_subbands": 3}, "not divisible"),
        ({"model__num_scales": 12}, "cannot be halved"),
        ({"model__scale": [2]}, "model.scale"),
        ({"model__norm": "GroupNormX"}, "GroupNorm"),
        ({"model__act": "swish"}, "not supported"),
        ({"model__num_channels": 0}, "positive"),
        ({"training__instruments": []}, "instruments"),
    ],
)
def test_mdx23c_config_errors_name_the_key(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mdx23c.from_config(small_mdx23c_config(**changes))


def test_mdx23c_missing_sections() -> None:
    with pytest.raises(ConfigError, match="'audio'"):
        mdx23c.from_config(Config.wrap({"model": {}, "training": {}}))
    with pytest.raises(ConfigError, match="'training'"):
        config = small_mdx23c_config()
        del config["training"]
        mdx23c.from_config(config)


# ---------------------------------------------------------------- SCNet


def small_scnet_config(**changes: object) -> Config:
    """The public SCNet config with narrow dims and two dual-path layers (same STFT and bands)."""
    config = public_config("config_musdb18_scnet.yaml")
    config.model.dims = [4, 8, 12, 16]
    config.model.num_dplayer = 2
    for key, value in changes.items():
        config.model[key] = value
    return config


@pytest.mark.parametrize("name", ["config_musdb18_scnet.yaml", "config_musdb18_scnet_large.yaml"])
def test_scnet_public_configs_have_the_reference_checkpoint_layout(name: str) -> None:
    with torch.device("meta"):
        model = scnet.from_config(public_config(name))
    assert layout(model) == REFERENCE_LAYOUT[name]


@pytest.mark.parametrize("samples", [4096, 4097, 5000, 3 * 1024 - 1])
def test_scnet_output_keeps_the_input_length(samples: int) -> None:
    model = randomise(scnet.from_config(small_scnet_config()), 0)
    with torch.inference_mode():
        out = model(noise(2, 2, samples))
    assert out.shape == (2, 4, 2, samples)
    assert torch.isfinite(out).all()


def test_scnet_padding_gives_an_odd_number_of_hops() -> None:
    model = scnet.from_config(small_scnet_config())
    for samples in range(1, 5 * 1024, 97):
        pad = model.padding(samples)
        assert 1 <= pad <= 2 * 1024
        assert (samples + pad) % 1024 == 0 and (samples + pad) // 1024 % 2 == 1


def test_scnet_state_dict_round_trip_and_determinism() -> None:
    config = small_scnet_config()
    torch.manual_seed(0)
    first = randomise(scnet.from_config(config), 1)
    second = scnet.from_config(config).eval()
    second.load_state_dict(first.state_dict(), strict=True)
    x = noise(1, 2, 6000, seed=2)
    with torch.inference_mode():
        a, b, again = first(x), second(x), first(x)
    assert torch.equal(a, b) and torch.equal(a, again)


def test_scnet_batch_items_are_independent() -> None:
    model = randomise(scnet.from_config(small_scnet_config()), 3)
    batch = noise(3, 2, 7000, seed=4)
    with torch.inference_mode():
        together = model(batch)
        alone = model(batch[2:3])
    torch.testing.assert_close(together[2:3], alone, rtol=1e-4, atol=1e-5)


def test_scnet_active_stem_ids_select_sources() -> None:
    model = randomise(scnet.from_config(small_scnet_config()), 5)
    x = noise(1, 2, 5000, seed=6)
    with torch.inference_mode():
        full = model(x)
        picked = model(x, active_stem_ids=[3, 1])
    torch.testing.assert_close(picked, full[:, [3, 1]], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="active_stem_ids"):
        model(x, active_stem_ids=[1, 1])
    with pytest.raises(ValueError, match="active_stem_ids"):
        model(x, active_stem_ids=[4])


def test_scnet_fusion_layer_equals_the_duplicated_channel_convolution() -> None:
    torch.manual_seed(0)
    layer = scnet.FusionLayer(5)
    x, skip = noise(2, 5, 9, 7, seed=1), noise(2, 5, 9, 7, seed=2)
    direct = F.glu(layer.conv((x + skip).repeat(1, 2, 1, 1)), dim=1)
    torch.testing.assert_close(layer(x, skip), direct, rtol=1e-5, atol=1e-6)


def test_scnet_mono_single_source() -> None:
    config = small_scnet_config(audio_channels=1, dims=[2, 8, 12], sources=["vocals"])
    model = randomise(scnet.from_config(config), 0)
    with torch.inference_mode():
        out = model(noise(2, 1, 5000))
    assert out.shape == (2, 1, 1, 5000)
    with pytest.raises(ValueError, match="expected"):
        model(noise(2, 2, 5000))


def test_scnet_bfloat16_runs_close_to_float32() -> None:
    model = randomise(scnet.from_config(small_scnet_config()), 7)
    x = noise(1, 2, 6000, seed=8)
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(x)
        native = copy.deepcopy(model).to(torch.bfloat16)(x.to(torch.bfloat16))
    assert autocast.dtype == torch.float32 and native.dtype == torch.bfloat16
    assert snr_db(reference, autocast) > 15
    assert snr_db(reference, native.float()) > 15


def test_scnet_missing_keys_take_the_reference_defaults() -> None:
    with torch.device("meta"):
        model = scnet.from_config(Config.wrap({"model": {"unknown_key": 1}}))
    assert model.sources == ["drums", "bass", "other", "vocals"]
    assert model.dims == [4, 32, 64, 128]
    assert layout(model)[1] == REFERENCE_LAYOUT["config_musdb18_scnet.yaml"][1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dims": [6, 8, 12]}, "dims\\[0\\]"),
        ({"dims": [4]}, "at least two"),
        ({"num_dplayer": 3}, "even"),
        ({"band_SR": [0.5, 0.5]}, "band_SR"),
        ({"band_stride": [1, 4]}, "band_stride"),
        ({"conv_kernel": 4}, "odd"),
        ({"sources": []}, "sources"),
        ({"win_size": 8192}, "win_size"),
        ({"hop_size": 0}, "hop_size"),
    ],
)
def test_scnet_config_errors_name_the_key(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        scnet.from_config(small_scnet_config(**changes))
    with pytest.raises(ConfigError, match="'model'"):
        scnet.from_config(Config.wrap({"audio": {}}))
