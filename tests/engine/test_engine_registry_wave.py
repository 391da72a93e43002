"""The shipped registry's demucs, MDX23C and HDemucs entries (sep_types 10, 17, 22:8, 27, 37) through the whole API.

For each entry a tiny random-weight model is built from the entry's own shipped config (its size fields shrunk, its
structure kept) or, for demucs packages, with the demucs package's classes; the file goes into a fresh data dir
under the entry's name through `<data dir>/models.yaml`, and a job of the option it serves is created, run, read
back with `get` and its files downloaded. Nothing is downloaded from the network.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import save_file

from openmvsep.engine.config import Config, load_config
from openmvsep.engine.models import build_model
from openmvsep.engine.models.htdemucs import save_demucs_safetensors
from openmvsep.engine.weights import WeightsRegistry

from conftest import wav_bytes

SHIPPED = WeightsRegistry(Path("/nonexistent"))
DEMUCS_4 = ["drums", "bass", "other", "vocals"]


def shrink(config: dict, model_type: str) -> dict:
    """The same architecture with small sizes: few channels, short FFTs, short segments."""
    if model_type == "mdx23c":
        config["audio"].update(chunk_size=7680, dim_f=512, dim_t=16, hop_length=512, n_fft=2048)
        config["model"].update(num_channels=8, growth=4, num_scales=2, num_blocks_per_scale=1, bottleneck_factor=2)
        config.setdefault("inference", {})["dim_t"] = 16
    else:  # MSST's demucs configs: the section named by `model` (htdemucs, hdemucs)
        section = config[config["model"]]
        if config["model"] == "htdemucs":
            section.update(channels=8, depth=2, nfft=512, t_layers=1, t_heads=2, bottom_channels=16)
        else:  # HDemucs joins its two branches where the spectrogram has one bin left: nfft = 4 ** depth
            section.update(channels=4, depth=3, nfft=64)
        config["training"]["segment"] = 1
    return config


class DataDir:
    """A data dir whose models.yaml puts tiny files under the shipped entries' names."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.weights = data_dir / "weights"
        self.weights.mkdir(parents=True, exist_ok=True)
        self.entries: list[dict] = []

    def from_config(self, name: str, seed: int) -> None:
        entry = SHIPPED.get(name)
        plain = shrink(json.loads(json.dumps(load_config(entry.config))), entry.model_type)  # tuples -> lists
        config = self.data_dir / f"{name}.yaml"
        config.write_text(yaml.safe_dump(plain))
        torch.manual_seed(seed)
        state = build_model(entry.model_type, Config.wrap(plain)).state_dict()
        save_file({k: v.contiguous().clone() for k, v in state.items()}, str(self.weights / f"{name}.safetensors"))
        self._register(entry.name, list(entry.serves), entry.model_type, config=str(config))

    def demucs(self, name: str, model: torch.nn.Module, serves: list[str] | None = None) -> None:
        save_demucs_safetensors(model.eval(), self.weights / f"{name}.safetensors")
        entry = SHIPPED.entries.get(name)
        self._register(name, serves if serves is not None else list(entry.serves) if entry else [], "demucs")

    def bag(self, name: str, seed: int) -> None:
        """Each member of a shipped bag as a tiny model; time-domain and hybrid members alternate, as in demucs'
        mdx bag, so the bag's per-source weights mix different models."""
        from demucs.demucs import Demucs
        from demucs.hdemucs import HDemucs

        for i, member in enumerate(SHIPPED.members(SHIPPED.get(name)).values()):
            torch.manual_seed(seed + i)
            model = (
                Demucs(DEMUCS_4, channels=4, depth=2, segment=1)
                if i % 2 == 0
                else HDemucs(DEMUCS_4, channels=4, depth=3, nfft=64, segment=1)
            )
            self.demucs(member.name, model)

    def _register(self, name: str, serves: list[str], model_type: str, **extra: str) -> None:
        self.entries.append(
            {"name": name, "serves": serves, "model_type": model_type, "filename": f"{name}.safetensors", **extra}
        )
        (self.data_dir / "models.yaml").write_text(yaml.safe_dump(self.entries))


def tiny_htdemucs(sources: list[str], seed: int) -> torch.nn.Module:
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    return HTDemucs(sources=sources, channels=8, depth=2, nfft=512, t_layers=1, t_heads=2, segment=1)


def tiny_hdemucs(sources: list[str], seed: int) -> torch.nn.Module:
    from demucs.hdemucs import HDemucs

    torch.manual_seed(seed)
    return HDemucs(sources, channels=4, depth=3, nfft=64, segment=1)


# (shipped entry, how its tiny file is made, the job's form fields, MVSep's file labels in order)
CASES = [
    ("htdemucs_vocals_msst", "config", {"sep_type": "27"}, ["Vocals", "Instrumental"]),
    (
        "drumsep_hdemucs_inagoy",
        "config",
        {"sep_type": "37", "add_opt1": "0", "add_opt2": "0"},  # a drums model first (MVSep's default)
        ["Drums (full)", "Kick", "Snare", "Cymbals", "Toms", "Residual"],
    ),
    (
        "drumsep_mdx23c_aufr33_jarredou",
        "config",
        {"sep_type": "37", "add_opt1": "1", "add_opt2": "1"},  # the input is drums already
        ["Kick", "Snare", "Toms", "Hi-hat", "Ride", "Crash", "Residual"],
    ),
    (
        "dereverb_mdx23c_aufr33_jarredou",
        "config",
        {"sep_type": "22", "add_opt1": "8", "add_opt2": "1"},
        ["Noreverb", "Reverb"],
    ),
    ("demucs3_mdx", "bag", {"sep_type": "10", "add_opt1": "0"}, ["Drums", "Bass", "Other", "Vocals"]),
    ("demucs3_mdx_extra", "bag", {"sep_type": "10", "add_opt1": "1"}, ["Drums", "Bass", "Other", "Vocals"]),
    ("uvr_demucs_model_1", "package", {"sep_type": "17", "add_opt1": "0"}, ["Vocals", "Instrumental"]),
    ("uvr_demucs_model_2", "package", {"sep_type": "17", "add_opt1": "1"}, ["Vocals", "Instrumental"]),
]


@pytest.mark.parametrize(("name", "kind", "form", "labels"), CASES, ids=[c[0] for c in CASES])
def test_entry_runs_through_the_api(make_harness, tmp_path, name, kind, form, labels):
    data = DataDir(tmp_path / "h0" / "data")  # where make_harness puts its first harness
    if kind == "config":
        data.from_config(name, seed=1)
    elif kind == "bag":
        data.bag(name, seed=2)
    else:
        # UVR's packages: demucs v3 (HDemucs) models with a vocals source
        data.demucs(name, tiny_hdemucs(["vocals", "instrumental"], seed=3))
    if form["sep_type"] == "37" and form.get("add_opt2") == "0":
        data.demucs("tiny_htdemucs", tiny_htdemucs(DEMUCS_4, seed=4), serves=["20:1"])
    h = make_harness()
    algorithms = {a["render_id"]: a for a in h.client.get("/api/app/algorithms").json()}
    assert algorithms[int(form["sep_type"])]["is_available"] is True
    mix = (0.2 * np.random.default_rng(5).standard_normal((2, 44100))).astype(np.float32)
    created = h.create(h.user(credits=100, premium=True), wav_bytes(mix, subtype="FLOAT"), **form)
    assert created["success"] is True, created
    h.run_all()
    done = h.get(created["data"]["hash"])
    assert done["status"] == "done", done
    files = done["data"]["files"]
    assert [f["type"] for f in files] == labels
    for f in files:
        audio, rate = sf.read(
            io.BytesIO(h.client.get(f["url"].removeprefix("http://testserver")).content), dtype="float32"
        )
        assert rate == 44100 and audio.shape == (mix.shape[1], 2)
        assert np.isfinite(audio).all()


def test_bag_applies_its_per_source_weights(tmp_path):
    """demucs' mdx bag is not one-hot: drums average three models, bass two, other and vocals two. The bag's stems
    equal demucs' own apply_model on the same BagOfModels."""
    from demucs.apply import apply_model

    from openmvsep.engine.runtime import Runtime
    from openmvsep.engine.separator import separate

    data = DataDir(tmp_path / "data")
    data.bag("demucs3_mdx", seed=6)
    runtime = Runtime.for_data_dir(data.data_dir, device="cpu")
    loaded = runtime.load(runtime.registry.get("demucs3_mdx"))
    bag = loaded.model
    assert [list(w) for w in bag.weights] == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 1], [1, 0, 1, 1]]
    mix = (0.2 * np.random.default_rng(7).standard_normal((2, 22050))).astype(np.float32)
    ours = separate(loaded, mix, residual=False)
    with torch.no_grad():
        reference = apply_model(bag, torch.from_numpy(mix)[None], shifts=0, split=True, overlap=0.25)[0].numpy()
    for i, stem in enumerate(DEMUCS_4):
        np.testing.assert_allclose(ours[stem], reference[i], atol=1e-5)
    # bass is the mean of the first two members only, and they differ
    with torch.no_grad():
        first, second = (apply_model(m, torch.from_numpy(mix)[None], shifts=0)[0].numpy() for m in bag.models[:2])
    np.testing.assert_allclose(ours["bass"], (first[1] + second[1]) / 2, atol=1e-5)
    assert not np.allclose(first[1], second[1], atol=1e-3)


def test_a_bag_runs_only_with_all_its_members(tmp_path):
    from openmvsep.algorithms.recipes import runnable_map
    from openmvsep.engine.runtime import Runtime

    data = DataDir(tmp_path / "data")
    data.bag("demucs3_mdx_extra", seed=8)
    runtime = Runtime.for_data_dir(data.data_dir, device="cpu")
    assert runnable_map(runtime)[10] == {"add_opt1": ["1"]}
    (data.weights / "demucs3_mdx_extra_cfa93e08.safetensors").unlink()
    assert 10 not in runnable_map(runtime)
    assert [e.name for e in runtime.registry.select("10:1")] == [
        "demucs3_mdx_extra",
        *(f"demucs3_mdx_extra_{sig}" for sig in ("e51eebcc", "a1d90b5c", "5d2d6c55", "cfa93e08")),
    ]
