"""The shipped registry's configs build their families, match the published checkpoints, and every entry runs its
catalog option through the whole API.

No weights are downloaded: each test builds a tiny random-weight checkpoint from the shipped config, shrunk in its
sizes (width, depth, heads, chunk) but kept in its structure (stems, target, bands layout, stereo, flags), and
registers it the way an admin does: `<data dir>/models.yaml` naming the shipped entry, its `serves`, the shrunk
config and a safetensors file in `<data dir>/weights`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import save_file

from openmvsep.algorithms.choice import Choice
from openmvsep.algorithms.recipes import RECIPES
from openmvsep.engine.config import Config, load_config
from openmvsep.engine.models import build_model
from openmvsep.engine.runtime import Runtime
from openmvsep.engine.separator import separate
from openmvsep.engine.weights import WeightEntry, WeightsRegistry
from openmvsep.service.catalog import Catalog

from conftest import wav_bytes

SHIPPED = WeightsRegistry(Path("/nonexistent"))
ROFORMERS = ("bs_roformer", "mel_band_roformer")
# The families whose published configs this file shrinks (demucs packages and bags, and Whisper, carry no such
# config: tests/engine/test_engine_registry_wave.py and tests/test_speech.py build theirs).
MODELS = [e for e in SHIPPED.entries.values() if e.model_type in (*ROFORMERS, "mdx23c", "scnet")]
# The entries of the RoFormer wave (and its two MDX23C checkpoints, 22:8 and 55:0): each gets a job through the API.
WAVE = [
    e
    for e in MODELS
    if e.extra.get("licence") is not None and (e.model_type in ROFORMERS or {"22:8", "55:0"} & set(e.serves))
]


SECONDS = 0.5  # the jobs' input: one model chunk covers it, so each job is one forward pass


def tiny_config(entry: WeightEntry, samples: int = 4096) -> dict:
    """The entry's config with small sizes and the same structure, as plain YAML-able data; its chunk holds at least
    `samples`."""
    plain = json.loads(json.dumps(load_config(entry.config)))  # tuples -> lists
    model = plain["model"]
    if entry.model_type in ROFORMERS:
        model.update(dim=16, depth=1, heads=2, dim_head=8, time_transformer_depth=1, freq_transformer_depth=1)
        model.update(mlp_expansion_factor=1, mask_estimator_depth=min(model.get("mask_estimator_depth", 1), 1))
        if model.get("linear_transformer_depth"):
            model["linear_transformer_depth"] = 1
        if "num_bands" in model:  # Mel-RoFormer: fewer mel bands, same filterbank rule
            model["num_bands"] = 8
        hop = model.get("stft_hop_length", 512)
        plain["audio"]["chunk_size"] = hop * (samples // hop + 2)
    elif entry.model_type == "mdx23c":
        model.update(num_channels=8, growth=4, num_scales=2, num_blocks_per_scale=1, bottleneck_factor=2)
        hop = plain["audio"]["hop_length"]
        dim_t = 4 * -(-(samples // hop + 2) // 4)  # divisible by 2**num_scales
        plain["audio"].update(dim_t=dim_t, chunk_size=hop * (dim_t - 1))
        plain["inference"]["dim_t"] = dim_t
    else:
        raise AssertionError(f"no shrinking rule for {entry.model_type}")
    plain.setdefault("inference", {})["num_overlap"] = 1  # one pass per chunk: the structure is what is tested
    return plain


def parameters(entry: WeightEntry, config: Config | dict) -> int:
    with torch.device("meta"):
        model = build_model(entry.model_type, Config.wrap(config) if isinstance(config, dict) else config)
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------ every shipped config


@pytest.mark.parametrize("entry", MODELS, ids=lambda e: e.name)
def test_config_builds_its_family_at_tiny_size(entry):
    """The published config keeps its structure when shrunk: the family builds and separates a short input."""
    config = Config.wrap(tiny_config(entry))
    torch.manual_seed(0)
    model = build_model(entry.model_type, config).eval()
    training = config.training
    assert training.get("target_instrument") in (None, *training.instruments)
    if entry.model_type in ROFORMERS:
        heads = 1 if training.get("target_instrument") else len(training.instruments)
        assert len(model.mask_estimators) == config.model.num_stems == heads
    channels = 2 if config.model.get("stereo", True) is not False else 1
    with torch.no_grad():
        out = model(torch.randn(1, channels, config.audio.chunk_size))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("entry", [e for e in MODELS if e.size], ids=lambda e: e.name)
def test_config_matches_the_published_checkpoint_size(entry):
    """A config that does not describe its checkpoint (wrong width, depth or band count) builds a different number
    of parameters: the published file holds them as fp32 (4 bytes) or fp16 (2 bytes) plus a small header."""
    count = parameters(entry, load_config(entry.config))
    assert entry.size is not None
    assert any(0 <= entry.size - count * width < 0.005 * entry.size for width in (4, 2)), (count, entry.size)


def test_wave_entries_are_documented():
    for entry in WAVE:
        assert entry.urls and all(u.startswith("https://") for u in entry.urls), entry.name
        assert entry.licence and entry.extra.get("note"), entry.name
        assert entry.serves, entry.name
        if "sdr" in entry.extra:
            assert isinstance(entry.extra["sdr"], float), entry.name


# ------------------------------------------------------------------------------------------ through the API


def job_fields(label: str) -> dict[str, str]:
    """The create form for a registry label: 'SEP_TYPE:KEY' picks add_opt1; a bare sep_type takes its defaults."""
    sep_type, _, key = label.partition(":")
    fields = {"sep_type": sep_type}
    algorithm = Catalog.load({}).get(int(sep_type))
    assert algorithm is not None
    names = [f.name for f in algorithm.fields]
    if key:
        fields["add_opt1"] = key
    elif "add_opt1" in names:  # a sep_type whose add_opt1 is not the model (50: how to extract)
        fields["add_opt1"] = next(f for f in algorithm.fields if f.name == "add_opt1").fallback_key
    else:
        fields["add_opt1"] = ""  # no options at all (63, 126)
    return fields


def install_tiny(data_dir: Path, *entries: WeightEntry) -> None:
    weights = data_dir / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    overrides = []
    for seed, entry in enumerate(entries, start=1):
        plain = tiny_config(entry, int(44100 * SECONDS))
        config = data_dir / f"{entry.name}.yaml"
        config.write_text(yaml.safe_dump(plain))
        torch.manual_seed(seed)
        state = build_model(entry.model_type, Config.wrap(plain)).state_dict()
        save_file({k: v.contiguous().clone() for k, v in state.items()}, str(weights / f"{entry.name}.safetensors"))
        overrides.append(
            {
                "name": entry.name,  # the shipped entry, with the admin's file
                "serves": list(entry.serves),
                "model_type": entry.model_type,
                "config": str(config),
                "filename": f"{entry.name}.safetensors",
            }
        )
    (data_dir / "models.yaml").write_text(yaml.safe_dump(overrides))


@pytest.mark.parametrize("entry", WAVE, ids=lambda e: e.name)
def test_entry_runs_its_recipe_through_the_api(make_harness, tmp_path, entry):
    install_tiny(tmp_path / "h0" / "data", entry)  # where make_harness puts its first harness
    h = make_harness()
    label = entry.serves[0]
    fields = job_fields(label)
    sep_type = int(fields["sep_type"])
    mix = (0.2 * np.random.default_rng(3).standard_normal((2, int(44100 * SECONDS)))).astype(np.float32)
    created = h.create(h.user(credits=1000, premium=True), wav_bytes(mix, subtype="FLOAT"), **fields)
    assert created["success"] is True, created
    assert h.run_all() >= 1
    done = h.get(created["data"]["hash"])
    assert done["status"] == "done", done

    catalog = Catalog.load({})
    algorithm = catalog.get(sep_type)
    assert algorithm is not None
    chosen = {f.name: fields.get(f.name) or f.fallback_key for f in algorithm.fields}  # the defaults fill the rest
    choice = catalog.choice(sep_type, {f.server_key: chosen[f.name] for f in algorithm.fields})
    stems = RECIPES[sep_type].stems(choice)
    labels = algorithm.output_labels(choice)
    if sep_type not in (40, 48):  # their recipe names its second stem 'instrumental' (MVSep's `output_stems`)
        assert set(stems) <= set(labels), (stems, labels)  # every file has MVSep's own name for its stem
    files = done["data"]["files"]
    assert [f["type"] for f in files] == [labels.get(s, s.title()) for s in stems]
    audio = {}
    for f in files:
        body = h.client.get(f["url"].removeprefix("http://testserver"))
        assert body.status_code == 200
        data, rate = sf.read(io.BytesIO(body.content), dtype="float32", always_2d=True)
        assert rate == 44100 and data.shape == (mix.shape[1], 2)
        audio[f["type"]] = data.T
    assert any(np.abs(a).max() > 0 for a in audio.values())


@pytest.mark.parametrize(
    ("sep_type", "name"), [(49, "mel_band_roformer_karaoke_becruily"), (57, "bs_roformer_male_female_aufr33")]
)
def test_extract_vocals_first(tmp_path, sep_type, name):
    """49 and 57 with "extract vocals first": the model runs on the vocals the shipped vocal model (48:0) extracts,
    and MVSep's extra stems are sums and differences of those parts."""
    install_tiny(tmp_path, SHIPPED.get(name), SHIPPED.get("mel_band_roformer_kj"))
    runtime = Runtime.for_data_dir(tmp_path, device="cpu")
    key = SHIPPED.get(name).serves[0].split(":")[1]
    mix = (0.2 * np.random.default_rng(4).standard_normal((2, int(44100 * SECONDS)))).astype(np.float32)
    choice = Choice.of(sep_type, {"model_type": key, "extract_type": "1"})
    stems, _ = RECIPES[sep_type].run({"audiofile": mix}, 44100, choice, runtime)
    assert list(stems) == RECIPES[sep_type].stems(choice)
    kj = runtime.load(runtime.registry.get("mel_band_roformer_kj"))
    vocals = separate(kj, mix, residual=False)["vocals"]
    model = runtime.load(runtime.registry.get(name))
    own = separate(model, vocals, residual=False)
    if sep_type == 49:
        lead = own[model.stems[0]]
        np.testing.assert_array_equal(stems["vocals-full"], vocals)
        np.testing.assert_array_equal(stems["vocals-lead"], lead)
        np.testing.assert_array_equal(stems["vocals-back"], vocals - lead)
        np.testing.assert_array_equal(stems["instrum-only"], mix - vocals)
        np.testing.assert_array_equal(stems["back-instrum"], mix - lead)
    else:
        np.testing.assert_array_equal(stems["male"], own["male"])
        np.testing.assert_array_equal(stems["female"], own["female"])
        np.testing.assert_array_equal(stems["instrumental"], mix - vocals)
        np.testing.assert_array_equal(stems["instrumental-plus-male"], mix - vocals + own["male"])
        np.testing.assert_array_equal(stems["instrumental-plus-female"], mix - vocals + own["female"])


def test_models_list_shows_the_licence(tmp_path):
    env = {**os.environ, "OPENMVSEP_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "250"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "openmvsep"), "models", "list", "63"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "licence" in done.stdout and "bs_roformer_sw" in done.stdout and "not stated" in done.stdout
