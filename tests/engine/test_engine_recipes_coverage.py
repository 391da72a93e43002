"""Recipes wiring catalog options to models: SCNet (46), crowd (34), denoise (47), reverb (22, with "extract vocals
first"), Demucs4 HT 6 stems and the htdemucs_ft bag (20), ensemble 26 option 3; and the shipped registry itself.

Models are tiny random-weight checkpoints built from the shrunk public configs in tests/fixtures/engine, registered
the way an admin does it: a `<data dir>/models.yaml` pointing at safetensors files in `<data dir>/weights`.
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

from openmvsep.algorithms.choice import Choice
from openmvsep.algorithms.recipes import (
    RECIPES,
    ExtractFirst,
    runnable_map,
    two_stem_recipe,
)
from openmvsep.engine.config import Config, load_config
from openmvsep.engine.models import build_model
from openmvsep.engine.runtime import Runtime
from openmvsep.engine.separator import separate
from openmvsep.engine.weights import WeightsRegistry
from openmvsep.service.catalog import Catalog

from conftest import wav_bytes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "engine"
DEMUCS_4 = ["drums", "bass", "other", "vocals"]


def mix_of(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal((2, int(44100 * seconds)))).astype(np.float32)


class Admin:
    """An admin's data dir: model configs, weights and models.yaml."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.weights = data_dir / "weights"
        self.weights.mkdir(parents=True, exist_ok=True)
        self.entries: list[dict] = []

    def model(
        self,
        name: str,
        serves: list[str],
        fixture: str,
        model_type: str,
        instruments: list[str],
        target: str | None,
        seed: int = 0,
        weights: bool = True,
    ) -> None:
        """A random-weight model from a shrunk public config, with its stems renamed."""
        plain = json.loads(json.dumps(load_config(FIXTURES / fixture / "config.yaml")))  # tuples -> lists
        plain["training"].update(instruments=instruments, target_instrument=target)
        if "num_stems" in plain["model"]:  # roformers: one mask head per output
            plain["model"]["num_stems"] = 1 if target else len(instruments)
        if "sources" in plain["model"]:
            plain["model"]["sources"] = instruments
        config = self.data_dir / f"{name}.yaml"
        config.write_text(yaml.safe_dump(plain))
        if weights:
            torch.manual_seed(seed)
            state = build_model(model_type, Config.wrap(plain)).state_dict()
            save_file({k: v.contiguous().clone() for k, v in state.items()}, str(self.weights / f"{name}.safetensors"))
        self._register(name, serves, model_type, config=str(config))

    def demucs(self, name: str, serves: list[str], sources: list[str], seed: int = 0) -> None:
        from demucs.htdemucs import HTDemucs

        from openmvsep.engine.models.htdemucs import save_demucs_safetensors

        torch.manual_seed(seed)
        model = HTDemucs(
            sources=sources, channels=8, depth=2, nfft=512, t_layers=1, t_heads=2, segment=1, samplerate=44100
        ).eval()
        save_demucs_safetensors(model, self.weights / f"{name}.safetensors")
        self._register(name, serves, "demucs")

    def _register(self, name: str, serves: list[str], model_type: str, **extra: str) -> None:
        self.entries = [e for e in self.entries if e["name"] != name] + [
            {"name": name, "serves": serves, "model_type": model_type, "filename": f"{name}.safetensors", **extra}
        ]
        (self.data_dir / "models.yaml").write_text(yaml.safe_dump(self.entries))

    def runtime(self) -> Runtime:
        return Runtime.for_data_dir(self.data_dir, device="cpu")

    def own(self, name: str, mix: np.ndarray) -> dict[str, np.ndarray]:
        """A model's stems straight from the separator (the reference for what a recipe returns)."""
        runtime = self.runtime()
        return separate(runtime.load(runtime.registry.get(name)), mix, batch_size=runtime.batch_size, residual=False)


@pytest.fixture
def admin(tmp_path) -> Admin:
    return Admin(tmp_path / "data")


def run(admin: Admin, sep_type: int, opts: dict[str, str], mix: np.ndarray) -> dict[str, np.ndarray]:
    recipe = RECIPES[sep_type]
    choice = Choice.of(sep_type, opts)
    stems, rate = recipe.run({"audiofile": mix}, 44100, choice, admin.runtime())
    assert rate == 44100
    assert list(stems) == recipe.stems(choice)
    for data in stems.values():
        assert data.shape == mix.shape and data.dtype == np.float32
    return stems


def assert_target_and_rest(
    stems: dict[str, np.ndarray], names: tuple[str, str], reference: np.ndarray, source: np.ndarray
) -> None:
    target, rest = names
    np.testing.assert_array_equal(stems[target], reference)
    np.testing.assert_array_equal(stems[rest], source - reference)  # exact: the residual is computed, not modelled
    assert np.abs(stems[target]).max() > 0


# ------------------------------------------------------------------------------------------ target and the rest


@pytest.mark.parametrize(
    ("sep_type", "key", "fixture", "model_type", "instruments", "target", "names", "own"),
    [
        (34, "0", "mel_band_roformer", "mel_band_roformer", ["crowd", "other"], "crowd", ("crowd", "other"), "crowd"),
        (47, "0", "mel_band_roformer", "mel_band_roformer", ["dry", "other"], "dry", ("dry", "other"), "dry"),
        # no training target: the model's first stem is the one MVSep names first
        (47, "1", "mel_band_roformer", "mel_band_roformer", ["dry", "other"], None, ("dry", "other"), "dry"),
        (22, "1", "bs_roformer", "bs_roformer", ["noreverb", "reverb"], "noreverb", ("noreverb", "reverb"), "noreverb"),
        # a 4-stem SCNet: its vocals, and the mix minus them
        (46, "5", "scnet", "scnet", DEMUCS_4, None, ("vocals", "instrumental"), "vocals"),
    ],
)
def test_target_and_rest(admin, sep_type, key, fixture, model_type, instruments, target, names, own):
    admin.model("m", [f"{sep_type}:{key}"], fixture, model_type, instruments, target)
    mix = mix_of()
    opts = {"model_type": key} | ({"extract_type": "1"} if sep_type == 22 else {})
    stems = run(admin, sep_type, opts, mix)
    assert list(stems) == list(names)
    assert_target_and_rest(stems, names, admin.own("m", mix)[own], mix)


def test_reverb_removal_extracts_vocals_first(admin):
    """22 with "Extract vocals": the vocal model splits the mix, the de-reverb model runs on the vocals."""
    admin.model("kj", ["48:0"], "mel_band_roformer", "mel_band_roformer", ["vocals", "other"], "vocals", seed=1)
    admin.model("dereverb", ["22:1"], "bs_roformer", "bs_roformer", ["noreverb", "reverb"], "noreverb", seed=2)
    mix = mix_of(seed=3)
    stems = run(admin, 22, {"model_type": "1", "extract_type": "0"}, mix)
    assert list(stems) == ["noreverb", "reverb", "vocals", "instrum", "restored"]
    vocals = admin.own("kj", mix)["vocals"]
    np.testing.assert_array_equal(stems["vocals"], vocals)
    np.testing.assert_array_equal(stems["instrum"], mix - vocals)
    assert_target_and_rest(stems, ("noreverb", "reverb"), admin.own("dereverb", vocals)["noreverb"], vocals)
    np.testing.assert_array_equal(stems["restored"], stems["noreverb"] + (mix - vocals))
    # and without extraction the same model runs on the mix itself
    plain = run(admin, 22, {"model_type": "1", "extract_type": "1"}, mix)
    np.testing.assert_array_equal(plain["noreverb"], admin.own("dereverb", mix)["noreverb"])


def test_extract_first_can_run_on_the_instrumental(admin):
    """The step is generic: 'extract from the instrumental part' runs the model on what the vocal model leaves."""
    admin.model("bs", ["40:4"], "bs_roformer", "bs_roformer", ["vocals", "other"], "vocals", seed=4)
    admin.model("crowd", ["34:0"], "mel_band_roformer", "mel_band_roformer", ["crowd", "other"], "crowd", seed=5)
    recipe = two_stem_recipe(
        34,
        ("crowd", "other"),
        extract_first=ExtractFirst("add_opt2", "extract_type", key="1", plain=("0",), on_rest=True),
    )
    mix = mix_of(seed=6)
    choice = Choice.of(34, {"model_type": "0", "extract_type": "1"})
    stems, _ = recipe.run({"audiofile": mix}, 44100, choice, admin.runtime())
    assert list(stems) == recipe.stems(choice) == ["crowd", "other", "vocals", "instrum", "restored"]
    vocals = admin.own("bs", mix)["vocals"]  # 48:0 is absent: the next extractor in line does it
    instrumental = mix - vocals
    assert_target_and_rest(stems, ("crowd", "other"), admin.own("crowd", instrumental)["crowd"], instrumental)
    np.testing.assert_array_equal(stems["restored"], stems["crowd"] + vocals)


# ------------------------------------------------------------------------------------------ demucs and ensembles


def test_htdemucs_6s_gives_six_stems(admin):
    sources = [*DEMUCS_4, "guitar", "piano"]
    admin.demucs("six", ["20:2"], sources)
    mix = mix_of(seed=7)
    stems = run(admin, 20, {"model_type": "2"}, mix)
    assert list(stems) == sources
    own = admin.own("six", mix)
    for name in sources:
        np.testing.assert_array_equal(stems[name], own[name])


def test_htdemucs_ft_takes_each_stem_from_its_specialist(admin):
    for seed, stem in enumerate(DEMUCS_4):  # the admin's files under the shipped names
        admin.demucs(f"htdemucs_ft_{stem}", [], DEMUCS_4, seed=10 + seed)
    mix = mix_of(seed=8)
    stems = run(admin, 20, {"model_type": "0"}, mix)
    assert list(stems) == DEMUCS_4
    own = {member: admin.own(f"htdemucs_ft_{member}", mix) for member in DEMUCS_4}
    for stem in DEMUCS_4:
        np.testing.assert_array_equal(stems[stem], own[stem][stem])
        for member in set(DEMUCS_4) - {stem}:  # the members differ, so taking the wrong one would show
            assert not np.array_equal(stems[stem], own[member][stem])


def test_ensemble_mdx23c_and_bs_roformer(admin):
    """26 option 3 (MDX23C, BS Roformer viperx): the two models' vocals averaged."""
    admin.model("mdx23c_vocals_msst", ["25:4"], "mdx23c", "mdx23c", ["vocals", "other"], None, seed=20)
    admin.model(
        "bs_roformer_viperx_1297", ["40:4"], "bs_roformer", "bs_roformer", ["vocals", "other"], "vocals", seed=21
    )
    mix = mix_of(seed=9)
    stems = run(admin, 26, {"model_type": "3", "detailed": "0"}, mix)
    expected = (
        admin.own("mdx23c_vocals_msst", mix)["vocals"].astype(np.float64)
        + admin.own("bs_roformer_viperx_1297", mix)["vocals"]
    ) / 2
    np.testing.assert_allclose(stems["vocals"], expected, atol=1e-6)
    np.testing.assert_array_equal(stems["instrumental"], mix - stems["vocals"])


# ------------------------------------------------------------------------------------------ what is runnable


def available(admin: Admin) -> tuple[dict, Catalog]:
    spec = runnable_map(admin.runtime())
    return spec, Catalog.load(spec)


def test_options_run_only_when_their_weights_are_here(admin):
    spec, catalog = available(admin)
    # nothing shipped is downloaded in a fresh data dir: DSP, and the transcribers whose models come in wheels
    assert set(spec) == {55, 68, 113, 114}
    admin.model("crowd", ["34:0"], "mel_band_roformer", "mel_band_roformer", ["crowd", "other"], "crowd", weights=False)
    admin.model(
        "dereverb",
        ["22:1"],
        "mel_band_roformer",
        "mel_band_roformer",
        ["noreverb", "reverb"],
        "noreverb",
        weights=False,
    )
    spec, catalog = available(admin)
    assert 34 not in spec and 22 not in spec and not catalog.is_available(34) and not catalog.is_available(22)

    admin.model("crowd", ["34:0"], "mel_band_roformer", "mel_band_roformer", ["crowd", "other"], "crowd")
    admin.model("dereverb", ["22:1"], "mel_band_roformer", "mel_band_roformer", ["noreverb", "reverb"], "noreverb")
    spec, catalog = available(admin)
    assert catalog.is_available(34) and catalog.available_keys(34, "add_opt1") == ["0"]
    assert catalog.is_available(22) and catalog.available_keys(22, "add_opt1") == ["1"]
    assert catalog.available_keys(22, "add_opt2") == ["1"]  # no vocal model to extract with yet

    admin.model("kj", ["48:0"], "mel_band_roformer", "mel_band_roformer", ["vocals", "other"], "vocals")
    spec, catalog = available(admin)
    assert catalog.available_keys(22, "add_opt2") == ["0", "1"]
    assert catalog.is_available(48) and not catalog.is_available(26)


def test_the_htdemucs_ft_bag_needs_all_four_members(admin):
    for stem in DEMUCS_4[:3]:
        admin.demucs(f"htdemucs_ft_{stem}", [], DEMUCS_4)
    _, catalog = available(admin)
    assert not catalog.is_available(20)
    admin.demucs("htdemucs_ft_vocals", [], DEMUCS_4)
    _, catalog = available(admin)
    assert catalog.available_keys(20, "add_opt1") == ["0"]


def test_every_shipped_option_runs_once_its_files_are_here(tmp_path):
    """Names in the recipes (ensemble members, bag members) and `serves` in registry.yaml agree with each other and
    with the catalog: with a file for every shipped entry (not loaded here), each mapped option is runnable."""
    runtime = Runtime.for_data_dir(tmp_path)
    runtime.registry.weights_dir.mkdir(parents=True)
    for entry in runtime.registry.entries.values():
        runtime.registry.path(entry).write_bytes(b"")
    catalog = Catalog.load(runnable_map(runtime))
    assert catalog.available_keys(40, "add_opt1") == ["4"]
    assert catalog.available_keys(48, "add_opt1") == ["0", "3", "5", "6", "7", "8", "9", "10"]
    assert catalog.available_keys(25, "add_opt1") == ["4"]
    assert catalog.available_keys(20, "add_opt1") == ["0", "1", "2"]
    assert catalog.available_keys(26, "add_opt2") == ["3", "5"]
    assert catalog.available_keys(26, "add_opt1") == ["0"]  # intermediate results are not produced
    assert catalog.available_keys(22, "add_opt1") == ["8", "1", "2", "5"]
    assert catalog.available_keys(22, "add_opt2") == ["0", "1"]  # a shipped vocal model extracts first
    # BS-RoFormer SW serves 63 (no options) and one option each of piano, guitar, bass and drums
    assert catalog.is_available(63) and catalog.is_available(126)
    for sep_type, key in ((29, "5"), (31, "7"), (41, "4"), (44, "5")):
        assert catalog.available_keys(sep_type, "add_opt1") == [key]
    assert catalog.available_keys(41, "add_opt2") == ["0"] and catalog.available_keys(44, "add_opt3") == ["0"]
    assert catalog.available_keys(49, "add_opt1") == ["0", "1"] and catalog.available_keys(49, "add_opt2") == ["0", "1"]
    assert catalog.available_keys(47, "add_opt1") == ["0", "1", "2"]
    assert catalog.available_keys(34, "add_opt1") == ["0"]
    assert catalog.available_keys(50, "add_opt1") == ["0", "1"]
    assert catalog.available_keys(57, "add_opt1") == ["0", "3"]
    assert catalog.available_keys(55, "add_opt1") == ["0", "dsp"]
    assert catalog.available_keys(10, "add_opt1") == ["0", "1"]  # demucs' mdx bags
    assert catalog.available_keys(17, "add_opt1") == ["0", "1"]  # UVR's bag (2) is not registered
    assert catalog.is_available(27)  # no options: its one model
    assert catalog.is_available(13)  # Demucs v2: demucs_extra
    assert catalog.available_keys(37, "add_opt1") == ["0", "1"]
    assert catalog.available_keys(37, "add_opt2") == ["0", "1"]


@pytest.mark.parametrize(
    ("sep_type", "opts"),
    [
        (34, {"model_type": "0"}),
        (47, {"model_type": "0"}),
        (47, {"model_type": "1"}),
        (22, {"model_type": "1", "extract_type": "1"}),
        (22, {"model_type": "7", "extract_type": "0"}),
        (20, {"model_type": "0"}),
        (20, {"model_type": "1"}),
        (20, {"model_type": "2"}),
        (22, {"model_type": "8", "extract_type": "1"}),
        (10, {"model_type": "0"}),
        (10, {"model_type": "1"}),
        (17, {"model_type": "0"}),
        (27, {}),
        (37, {"model_type": "0", "extract_type": "0"}),
        (37, {"model_type": "1", "extract_type": "0"}),
        (37, {"model_type": "1", "extract_type": "1"}),
        (41, {"model_type": "4", "extract_type": "0", "detailed": "0"}),
        (49, {"model_type": "0", "extract_type": "0"}),
        (49, {"model_type": "5", "extract_type": "1"}),
        (57, {"model_type": "0", "extract_type": "0"}),
        (57, {"model_type": "3", "extract_type": "1"}),
        (55, {"model_type": "0"}),
        (63, {}),
        (126, {}),
        (13, {}),
    ],
)
def test_stems_are_named_as_mvsep_names_them(sep_type, opts):
    catalog = Catalog.load({})
    choice = catalog.choice(sep_type, opts)
    labels = catalog.get(sep_type).output_labels(choice)
    assert set(RECIPES[sep_type].stems(choice)) <= set(labels), labels


def test_a_job_gets_mvseps_file_labels(make_harness, tmp_path):
    admin = Admin(tmp_path / "h0" / "data")  # where make_harness puts its first harness
    admin.model("denoise", ["47:0"], "mel_band_roformer", "mel_band_roformer", ["dry", "other"], "dry")
    h = make_harness()
    mix = mix_of(seed=11)
    created = h.create(h.user(), wav_bytes(mix, subtype="FLOAT"), sep_type="47", add_opt1="0")
    assert created["success"] is True, created
    h.run_all()
    done = h.get(created["data"]["hash"])
    assert done["status"] == "done", done
    files = done["data"]["files"]
    assert [f["type"] for f in files] == ["Clean (dry)", "Noise"]
    dry, _ = sf.read(
        io.BytesIO(h.client.get(files[0]["url"].removeprefix("http://testserver")).content),
        dtype="float32",
        always_2d=True,
    )
    np.testing.assert_allclose(dry.T, admin.own("denoise", mix)["dry"], atol=1e-6)


# ------------------------------------------------------------------------------------------ the shipped registry


@pytest.mark.parametrize("entry", list(WeightsRegistry(Path("/nonexistent")).entries.values()), ids=lambda e: e.name)
def test_shipped_entry_config_builds_its_model(entry):
    """Each config parses and describes its family (built on the meta device: full size, no memory)."""
    if entry.model_type == "demucs_bag":  # demucs' bag YAML over members that are entries themselves
        bag = yaml.safe_load(entry.config.read_text())
        members = WeightsRegistry(Path("/nonexistent")).members(entry)
        assert list(members) == bag["models"] and all(m.model_type == "demucs" for m in members.values())
        assert len(bag.get("weights") or [[]] * len(members)) == len(members)
        return
    assert entry.urls and entry.urls[0].startswith("https://")
    if entry.model_type == "demucs":  # the package carries its own architecture
        assert entry.config == Path("") and entry.filename.endswith(".th")
        return
    if entry.model_type == "whisper":  # the openai-whisper package's class; the checkpoint names its dimensions
        assert entry.config == Path("") and entry.filename.endswith(".pt") and entry.sha256
        return
    config = load_config(entry.config)
    with torch.device("meta"):
        model = build_model(entry.model_type, config)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000
    training = config.training
    assert training.get("target_instrument") in (None, *training.instruments)
