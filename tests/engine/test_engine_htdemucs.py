"""HTDemucs through the demucs package: our batched `apply` against demucs' own `apply_model`, bags with
stem-selective evaluation, the `.th` / safetensors package formats, and MSST htdemucs configs.

The models are tiny random-weight HTDemucs (8 kHz, 0.5 s segments, nfft 256) so every comparison with the real
demucs code runs in well under a second on a CPU.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import yaml
from demucs.api import Separator
from demucs.apply import BagOfModels, apply_model
from demucs.hf import load_safetensors_model
from demucs.htdemucs import HTDemucs
from demucs.states import load_model

from openmvsep.engine.config import ConfigError, load_config
from openmvsep.engine.demucs_apply import _attention_through_sdpa, apply, normalized_apply, plan_segments
from openmvsep.engine.models.htdemucs import (
    DemucsLoadError,
    UntrustedCheckpointError,
    from_config,
    load_bag,
    load_demucs_package,
    save_demucs_safetensors,
)

from conftest import SHARED

SOURCES = ["drums", "bass", "other", "vocals"]
RATE = 8000
SEGMENT = Fraction(1, 2)  # L = 4000 samples, stride 3000 at overlap 0.25
CONFIGS = SHARED / "reference" / "msst-configs"


def tiny_htdemucs(seed: int, sources: list[str] = SOURCES, **overrides) -> HTDemucs:
    torch.manual_seed(seed)
    kwargs = dict(channels=8, depth=2, nfft=256, t_layers=1, t_heads=2, samplerate=RATE, segment=SEGMENT)
    kwargs.update(overrides)
    return HTDemucs(sources=list(sources), **kwargs).eval()


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    error = (reference.double() - estimate.double()).pow(2).sum().item()
    return math.inf if error == 0 else 10 * math.log10(reference.double().pow(2).sum().item() / error)


def assert_same(reference: torch.Tensor, estimate: torch.Tensor, min_snr: float = 80.0) -> None:
    assert reference.shape == estimate.shape
    scale = reference.abs().max().item()
    assert (reference - estimate).abs().max().item() <= 1e-5 * scale
    assert snr_db(reference, estimate) >= min_snr


def demucs_reference(model, mix: torch.Tensor, **kwargs) -> torch.Tensor:
    return apply_model(model, mix[None], shifts=0, split=True, **kwargs)[0]


def reference_through_sdpa(model, mix: torch.Tensor, **kwargs) -> torch.Tensor:
    """demucs' apply_model with its attention through scaled_dot_product_attention, as ours runs on CPU."""
    with _attention_through_sdpa(torch.device("cpu")):
        return demucs_reference(model, mix, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The models are so small that intra-op threads only spin: on a busy 2-core machine one thread is ~20x cheaper.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> HTDemucs:
    return tiny_htdemucs(0)


# --------------------------------------------------------------------------------------------------- apply


@pytest.mark.parametrize("length", [1501, 3000, 4000, 13457])  # < L, one stride, one segment, not a multiple (odd pads)
def test_apply_matches_demucs_apply_model_for_every_batch_size(model, length):
    mix = noise(2, length, seed=length)
    reference = demucs_reference(model, mix)
    for batch_size in (1, 3, 8):
        ours = apply(model, mix, batch_size=batch_size)
        assert ours.shape == (4, 2, length)
        assert_same(reference, ours)
        if batch_size == 1:  # one segment per call is the reference's own arithmetic: bit-equal with the same
            assert torch.equal(ours, reference_through_sdpa(model, mix))  # attention kernel (see demucs_apply)


def test_apply_with_segment_and_overlap_overrides(model):
    mix = noise(2, 10000, seed=1)
    reference = demucs_reference(model, mix, overlap=0.5, segment=0.3)
    assert_same(reference, apply(model, mix, overlap=0.5, segment=0.3, batch_size=4))


def test_model_running_chunks_at_their_own_length_is_batched_per_length():
    # MSST-built HTDemucs (use_train_segment False) sees the tail segments at their own, shorter lengths.
    model = tiny_htdemucs(1, use_train_segment=False)
    plan = plan_segments(model, 13456)
    assert [s.padded_length for s in plan] == [4000, 4000, 4000, 4000, 1456]
    mix = noise(2, 13456, seed=2)
    assert_same(demucs_reference(model, mix), apply(model, mix, batch_size=8))


def test_batched_mix_equals_each_track_alone(model):
    tracks = noise(3, 2, 7000, seed=3)
    together = apply(model, tracks, batch_size=4)
    assert together.shape == (3, 4, 2, 7000)
    for i in range(3):
        assert_same(apply(model, tracks[i], batch_size=1), together[i])


def test_stem_selection_on_one_model(model):
    mix = noise(2, 7000, seed=4)
    everything = apply(model, mix)
    picked = apply(model, mix, stems=["vocals", "drums"])
    assert torch.equal(picked, everything[[3, 0]])
    assert torch.equal(apply(model, mix, stems=[1]), everything[[1]])


def test_progress_counts_forward_segments(model):
    calls: list[tuple[int, int]] = []
    apply(model, noise(2, 13456, seed=5), batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_apply_rejects_bad_arguments(model):
    mix = noise(2, 8000)
    with pytest.raises(ValueError, match="shortened"):
        apply(model, mix, segment=0.6)  # longer than the 0.5 s the model was built for
    with pytest.raises(ValueError, match="channels"):
        apply(model, noise(1, 8000))
    with pytest.raises(ValueError, match="mix must be"):
        apply(model, noise(8000))
    with pytest.raises(ValueError, match="unknown stem"):
        apply(model, mix, stems=["piano"])
    with pytest.raises(ValueError, match="overlap"):
        apply(model, mix, overlap=1.0)


def test_attention_runs_without_the_mha_fast_path_on_cpu_and_the_flag_comes_back(model):
    """The self-attention layers go through scaled_dot_product_attention (the CPU speed-up of demucs_apply), only
    while the model runs; the output equals the fast path's."""
    seen: list[bool] = []
    hook = model.register_forward_pre_hook(lambda *_: seen.append(torch.backends.mha.get_fastpath_enabled()))
    mix = noise(2, 7000, seed=8)
    try:
        out = apply(model, mix)
    finally:
        hook.remove()
    assert seen and not any(seen)
    assert torch.backends.mha.get_fastpath_enabled()
    assert_same(demucs_reference(model, mix), out)


def test_deterministic(model):
    mix = noise(2, 7000, seed=6)
    assert torch.equal(apply(model, mix, batch_size=3), apply(model, mix, batch_size=3))


def test_bf16_autocast_on_cpu_stays_close(model):
    mix = noise(2, 7000, seed=7)
    full = apply(model, mix)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = apply(model, mix)
    assert reduced.dtype == torch.float32  # the overlap-add accumulates in float32
    assert snr_db(full, reduced) >= 30


def test_normalized_apply_matches_demucs_separator(model, tmp_path):
    # demucs.api.Separator loads "sig" from a local repo folder holding sig.th, and normalises the track itself.
    torch.save(
        {"klass": HTDemucs, "args": [], "kwargs": model._init_args_kwargs[1], "state": model.state_dict()},
        tmp_path / "tinysig.th",
    )
    separator = Separator(model="tinysig", repo=tmp_path, device="cpu", shifts=0, overlap=0.25, progress=False)
    wav = 0.3 * noise(2, 7000, seed=8) + 0.1
    _, stems = separator.separate_tensor(wav)
    reference = torch.stack([stems[name] for name in SOURCES])
    assert_same(reference, normalized_apply(model, wav, batch_size=4))
    batched = normalized_apply(model, torch.stack([wav, 2 * wav]), batch_size=4)
    assert_same(reference, batched[0])
    assert_same(2 * reference, batched[1])


# --------------------------------------------------------------------------------------------------- bags


class ForwardCounter:
    def __init__(self, *models: torch.nn.Module) -> None:
        self.calls = [0] * len(models)
        for i, model in enumerate(models):
            model.register_forward_pre_hook(lambda *_, i=i: self._count(i))

    def _count(self, i: int) -> None:
        self.calls[i] += 1


def test_bag_with_one_hot_weights_and_stem_selective_evaluation():
    vocals_model = tiny_htdemucs(10, ["vocals", "other"])
    other_model = tiny_htdemucs(11, ["vocals", "other"])
    bag = BagOfModels([vocals_model, other_model], [[1.0, 0.0], [0.0, 1.0]])
    counter = ForwardCounter(vocals_model, other_model)
    mix = noise(2, 7000, seed=9)
    reference = demucs_reference(bag, mix)
    counter.calls = [0, 0]

    both = apply(bag, mix, batch_size=8)
    assert_same(reference, both)
    assert counter.calls == [1, 1]  # three segments each, in one forward call per model

    vocals_only = apply(bag, mix, stems=["vocals"], batch_size=8)
    assert counter.calls == [2, 1]  # the "other" specialist did not run
    assert vocals_only.shape == (1, 2, 7000)
    assert torch.equal(vocals_only[0], both[0])
    assert_same(apply(vocals_model, mix)[0], vocals_only[0])


def test_bag_with_mixed_weights_matches_demucs():
    models = [tiny_htdemucs(seed, ["vocals", "other"]) for seed in (12, 13)]
    bag = BagOfModels(models, [[2.0, 1.0], [1.0, 0.0]])
    mix = noise(2, 7000, seed=10)
    reference = demucs_reference(bag, mix)
    assert_same(reference, apply(bag, mix, batch_size=2))
    assert_same(reference[[1]], apply(bag, mix, stems=["other"]))


def test_load_bag_from_yaml(tmp_path):
    members = {"aaaa1111": tiny_htdemucs(14), "bbbb2222": tiny_htdemucs(15)}
    path = tmp_path / "bag.yaml"
    path.write_text(yaml.safe_dump({"models": list(members), "weights": [[1, 1, 0, 0], [0, 0, 1, 1]], "segment": 0.25}))
    bag = load_bag(path, members.__getitem__)
    assert isinstance(bag, BagOfModels)
    assert bag.weights == [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    assert all(member.segment == 0.25 for member in bag.models)  # shorter than 0.5 s: applied

    no_weights = load_bag({"models": ["aaaa1111"]}, members.__getitem__)
    assert no_weights.weights == [[1.0] * 4]
    with pytest.raises(DemucsLoadError, match="weights"):
        load_bag({"models": ["aaaa1111"], "weights": [[1, 0]]}, members.__getitem__)
    with pytest.raises(DemucsLoadError, match="weight 0"):
        load_bag({"models": ["aaaa1111"], "weights": [[1, 0, 1, 1]]}, members.__getitem__)
    with pytest.raises(DemucsLoadError, match="models"):
        load_bag({"weights": []}, members.__getitem__)
    other_sources = tiny_htdemucs(16, ["vocals", "other"])
    with pytest.raises(DemucsLoadError, match="sources"):
        load_bag({"models": ["a", "b"]}, {"a": members["aaaa1111"], "b": other_sources}.__getitem__)


# --------------------------------------------------------------------------------------------------- packages


def official_package(model: HTDemucs, half: bool = True) -> dict:
    # The layout of demucs' `serialize_model`: class object, init args/kwargs, (half precision) state.
    args, kwargs = model._init_args_kwargs
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    return {"klass": HTDemucs, "args": list(args), "kwargs": kwargs, "state": state, "training_args": {}}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_th_package_round_trip_needs_trust(tmp_path):
    original = tiny_htdemucs(20)
    path = tmp_path / "955717e8-8726e21a.th"
    torch.save(official_package(original), path)

    with pytest.raises(UntrustedCheckpointError, match="sha256"):
        load_demucs_package(path, trusted=False)
    with pytest.raises(UntrustedCheckpointError):
        load_demucs_package(path.read_bytes(), trusted=False)

    loaded = load_demucs_package(path, trusted=True)
    assert isinstance(loaded, HTDemucs) and not loaded.training
    assert loaded.segment == SEGMENT and loaded.sources == SOURCES
    assert_same_weights(load_model(str(path)), loaded)  # demucs' own loader agrees

    from_dict = load_demucs_package(official_package(original, half=False), trusted=False)
    assert_same_weights(original, from_dict)


def test_package_with_foreign_class_is_refused():
    package = official_package(tiny_htdemucs(21))
    package["klass"] = torch.nn.Linear
    with pytest.raises(DemucsLoadError, match="allowed"):
        load_demucs_package(package, trusted=True)
    package["klass"] = "os.system"
    with pytest.raises(DemucsLoadError, match="allowed"):
        load_demucs_package(package, trusted=True)
    broken = official_package(tiny_htdemucs(21))
    broken["state"].pop(next(iter(broken["state"])))
    with pytest.raises(DemucsLoadError, match="does not fit"):
        load_demucs_package(broken, trusted=True)


def test_safetensors_round_trip_is_safe_and_readable_by_demucs(tmp_path):
    original = tiny_htdemucs(22)
    path = tmp_path / "model.safetensors"
    save_demucs_safetensors(original, path)

    loaded = load_demucs_package(path, trusted=False)
    assert loaded.segment == SEGMENT and isinstance(loaded.segment, Fraction)
    assert_same_weights(original, loaded)
    mix = noise(2, 5000, seed=11)
    assert torch.equal(apply(original, mix), apply(loaded, mix))
    assert_same_weights(load_safetensors_model(path), loaded)  # demucs 4.1.0's HF reader agrees
    assert_same_weights(load_demucs_package(path.read_bytes(), trusted=False), loaded)

    half_path = tmp_path / "half.safetensors"
    save_demucs_safetensors(original, half_path, half=True)
    assert half_path.stat().st_size < path.stat().st_size * 0.6


def test_safetensors_naming_another_class_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "evil.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"klass": "os.system", "args": "[]", "kwargs": "{}"})
    with pytest.raises(DemucsLoadError, match="allowed"):
        load_demucs_package(path, trusted=False)
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": "pt"})
    with pytest.raises(DemucsLoadError, match="klass"):
        load_demucs_package(path, trusted=False)


# --------------------------------------------------------------------------------------------------- MSST configs


def shrunk_config(name: str):
    config = load_config(CONFIGS / name)
    config.htdemucs.channels = 8
    config.htdemucs.bottom_channels = 16
    config.htdemucs.t_layers = 1
    return config


@pytest.mark.parametrize(
    "name, instruments",
    [("config_musdb18_htdemucs.yaml", SOURCES), ("config_vocals_htdemucs.yaml", ["vocals", "other"])],
)
def test_from_msst_config_loads_a_saved_state_strictly(name, instruments, tmp_path):
    config = shrunk_config(name)
    torch.manual_seed(0)
    saved = from_config(config)
    torch.save(saved.state_dict(), tmp_path / "model.ckpt")
    torch.manual_seed(1)
    model = from_config(config)
    model.load_state_dict(torch.load(tmp_path / "model.ckpt", weights_only=True), strict=True)

    assert isinstance(model, HTDemucs) and not model.training
    assert model.sources == instruments
    assert model.samplerate == 44100 and model.segment == 11 and model.audio_channels == 2
    assert model.use_train_segment is False  # MSST's class default: chunks run at their own length
    assert model.encoder[0].dconv.layers[0][-1].scale.abs().max().item() < 1  # dconv_init 1e-3 read as a number

    x = noise(3, 2, 4410, seed=12)
    with torch.inference_mode():
        y = model(x)
        alone = model(x[1:2])
        reference = saved(x)
    assert y.shape == (3, len(instruments), 2, 4410)
    assert_same(reference, y, min_snr=120)
    assert_same(y[1:2], alone)


def test_from_config_errors():
    config = shrunk_config("config_vocals_htdemucs.yaml")
    config.htdemucs.num_subbands = 2
    with pytest.raises(ConfigError, match="num_subbands"):
        from_config(config)

    config = shrunk_config("config_vocals_htdemucs.yaml")
    config.model = "bs_roformer"
    with pytest.raises(ConfigError, match="model"):
        from_config(config)

    config = shrunk_config("config_vocals_htdemucs.yaml")
    del config.training["instruments"]
    with pytest.raises(ConfigError, match="instruments"):
        from_config(config)

    config = shrunk_config("config_vocals_htdemucs.yaml")
    config.training.segment = 0
    with pytest.raises(ConfigError, match="segment"):
        from_config(config)

    config = shrunk_config("config_vocals_htdemucs.yaml")
    config.htdemucs.t_heads = 3  # 16 bottom channels are not divisible by 3 heads
    with pytest.raises(ConfigError, match="htdemucs"):
        from_config(config)


def test_from_config_ignores_unknown_keys_and_honours_use_train_segment():
    config = shrunk_config("config_vocals_htdemucs.yaml")
    config.htdemucs.some_future_option = True
    config.htdemucs.use_train_segment = True
    model = from_config(config)
    assert model.use_train_segment is True
