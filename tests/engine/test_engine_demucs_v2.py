"""Demucs v2 (sep_type 13): openmvsep's DemucsV2 against independent computations, demucs 2.0.3's file format, and
the whole API.

The published files (`demucs_extra-3646af93.th` ...) are bare state dicts that demucs 2.0.3 writes with
`torch.save(model.state_dict())` and names `<name>-<first 8 hex digits of the sha256>.th`; the tests write tiny
random-weight files exactly so. Nothing is downloaded.

Oracles:
- demucs 4's `demucs.demucs.Demucs` computes v2's function when v2's decoder context is 1 (its kernel 2c+1 with
  c=0 is v2's kernel 1, unpadded): there the whole forward and demucs' own `apply_model` must agree with ours,
  with the tensors mapped by demucs 4's own key conversion for "previous generation Demucs models".
- For the published context (3), demucs 4's layers with context 1 have v2's kernel of 3 but are zero-padded:
  with that padding removed and the skips centre-trimmed by demucs' `center_trim`, they must give our output.
- The input and output lengths for one input, derived by hand from v2's layer arithmetic.
- demucs 2.x's own code, when `OPENMVSEP_DEMUCS2_SRC` names a directory holding its `demucs/model.py` and
  `demucs/utils.py` (e.g. `git show v2.0.3:demucs/model.py` of facebookresearch/demucs); skipped otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import sys
import types
from pathlib import Path

import julius
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from demucs.apply import apply_model
from demucs.demucs import Demucs
from demucs.utils import center_trim
from typer.testing import CliRunner

from openmvsep.algorithms.recipes import RECIPES
from openmvsep.cli import app
from openmvsep.engine.checkpoints import CheckpointError
from openmvsep.engine.config import Config, ConfigError, load_config
from openmvsep.engine.demucs_apply import apply
from openmvsep.engine.models import build_model
from openmvsep.engine.models.demucs_v2 import DemucsV2
from openmvsep.engine.runtime import Runtime
from openmvsep.engine.separator import load_model, separate
from openmvsep.engine.weights import WeightsRegistry
from openmvsep.service.catalog import Catalog
from openmvsep.service.naming import stem_token

from conftest import wav_bytes

SHIPPED = WeightsRegistry(Path("/nonexistent"))
SOURCES = ["drums", "bass", "other", "vocals"]  # demucs 2.0.3's pretrained.SOURCES


def tiny(seed: int = 0, **overrides) -> DemucsV2:
    """v2's default architecture (depth 6, kernel 8, stride 4, context 3, BiLSTM, resampling) with 4 channels."""
    torch.manual_seed(seed)
    return DemucsV2(SOURCES, **{"channels": 4, "segment": 1, **overrides}).eval()


def demucs4_twin(ours: DemucsV2, context: int, normalize: bool) -> Demucs:
    """demucs 4's Demucs with v2's layers (no DConv branch, no GroupNorm, ReLU, no rescaling) holding our tensors;
    demucs 4's load_state_dict renames v2's Sequential indices to its own."""
    twin = Demucs(
        SOURCES, channels=4, depth=6, lstm_layers=2, context=context, gelu=False, norm_starts=6, dconv_mode=0,
        normalize=normalize, rescale=0, segment=1,
    ).eval()  # fmt: skip
    twin.load_state_dict(dict(ours.state_dict()))
    return twin


def noise(*shape: int, seed: int = 1) -> torch.Tensor:
    return 0.3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ the model


@pytest.mark.parametrize("normalize", [False, True])
def test_equals_demucs4_demucs_where_the_architectures_coincide(normalize):
    ours = tiny(normalize=normalize, context=1)
    twin = demucs4_twin(ours, context=0, normalize=normalize)
    assert ours.valid_length(30011) == twin.valid_length(30011)
    x = noise(2, 2, ours.valid_length(22050))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), twin(x), rtol=0, atol=1e-6)
    mix = noise(2, 44100 * 3 + 77, seed=2)  # three 1 s segments and a bit: overlap-add and a short last segment
    with torch.no_grad():
        reference = apply_model(twin, mix[None], shifts=0, split=True, overlap=0.25)[0]
    torch.testing.assert_close(apply(ours, mix, batch_size=2), reference, rtol=0, atol=1e-6)


def test_context_convolution_is_unpadded_and_skips_are_centre_trimmed():
    """The published setting (context 3): demucs 4's context-1 layers have v2's kernel of 3; without their zero
    padding, with each skip centre-trimmed to the decoder's signal, they compute v2's forward."""
    ours = tiny()
    twin = demucs4_twin(ours, context=1, normalize=False)
    for decode in twin.decoder:
        decode[0].padding = (0,)
    x = noise(1, 2, ours.valid_length(30001))
    with torch.no_grad():
        y = julius.resample_frac(x, 1, 2)
        saved = []
        for encode in twin.encoder:
            y = encode(y)
            saved.append(y)
        y = twin.lstm(y)
        for decode in twin.decoder:
            y = decode(y + center_trim(saved.pop(), y))
        y = julius.resample_frac(y, 2, 1).view(1, 4, 2, -1)
        torch.testing.assert_close(ours(x), y, rtol=0, atol=1e-6)
        # demucs 4 as it is, on the same tensors and input: its padded convolutions change about 150 samples at each
        # end of the output, here inside the 30001 that demucs' split keeps of a segment.
        for decode in twin.decoder:
            decode[0].padding = (1,)
        assert (center_trim(ours(x), 30001) - center_trim(twin(x), 30001)).abs().max() > 1e-5


def test_lengths_follow_v2s_layer_arithmetic():
    """For 44100 samples, by hand: x2 upsampled 88200; each encoder level ceil((n - 8) / 4) + 1 frames, plus the 2
    its decoder's context convolution consumes: 22051, 5514, 1380, 346, 88, 23; back up (n - 1) * 4 + 8: 96, 388,
    1556, 6228, 24916, 99668; halved: 49834. That input runs every level without a sample over, and the decoder,
    losing 2 frames before each transposed convolution, gives 21 -> 88, 86 -> 348, 346 -> 1388, 1386 -> 5548,
    5546 -> 22188, 22186 -> 88748: 44374 samples, 274 more than asked (centre-trimmed by the split)."""
    model = tiny()
    assert model.valid_length(44100) == 49834
    seen = []
    hooks = [
        encode[0].register_forward_hook(lambda m, i, o: seen.append((i[0].shape[-1], o.shape[-1])))
        for encode in model.encoder
    ]
    with torch.no_grad():
        out = model(noise(1, 2, 49834))
    for hook in hooks:
        hook.remove()
    assert seen == [(99668, 24916), (24916, 6228), (6228, 1556), (1556, 388), (388, 96), (96, 23)]
    assert all((n - 8) % 4 == 0 for n, _ in seen)
    assert out.shape == (1, 4, 2, 44374)
    assert apply(model, noise(2, 44100)).shape == (4, 2, 44100)


def test_published_configs_build_the_published_models():
    """The 64-channel model holds 265.7 M parameters, about the 1 GB demucs' README gives for `demucs` (its
    diffq-quantized twin: 150 MB); demucs48_hq 149.5 M. Stems in demucs' order."""
    sizes = {}
    for name in ("demucs2_extra", "demucs2", "demucs2_48_hq"):
        entry = SHIPPED.get(name)
        assert entry.model_type == "demucs_v2" and entry.licence.startswith("MIT")
        assert entry.urls == (f"https://dl.fbaipublicfiles.com/demucs/v3.0/{entry.filename}",)
        config = load_config(entry.config)
        assert list(config.training.instruments) == SOURCES and config.inference.normalize is True
        with torch.device("meta"):
            model = build_model("demucs_v2", config)
        sizes[name] = sum(p.numel() for p in model.parameters())
        assert model.segment == 40 and model.context == 3 and model.lstm is not None
    assert sizes == {"demucs2_extra": 265_679_496, "demucs2": 265_679_496, "demucs2_48_hq": 149_462_504}
    assert [e.name for e in SHIPPED.entries.values() if "13:" in e.serves] == ["demucs2_extra"]


def test_config_errors():
    base = {"training": {"instruments": SOURCES, "samplerate": 44100, "channels": 2, "segment": 40}}
    with pytest.raises(ConfigError, match="no argument"):
        build_model("demucs_v2", Config.wrap({**base, "demucs_v2": {"chanels": 4}}))
    with pytest.raises(ConfigError, match="instruments"):
        build_model("demucs_v2", Config.wrap({"training": {"instruments": []}}))
    with pytest.raises(ConfigError, match="valid DemucsV2"):
        build_model("demucs_v2", Config.wrap({**base, "demucs_v2": {"depth": 0}}))


# ------------------------------------------------------------------------------------------ demucs 2.x itself


def demucs2_source() -> Path | None:
    root = os.environ.get("OPENMVSEP_DEMUCS2_SRC")
    return Path(root) / "demucs" if root and (Path(root) / "demucs" / "model.py").is_file() else None


@pytest.mark.skipif(demucs2_source() is None, reason="set OPENMVSEP_DEMUCS2_SRC to a demucs 2.x checkout")
def test_equals_demucs2_itself(monkeypatch):
    """demucs 2.x's Demucs and its split apply_model (its utils import diffq only for quantized models)."""
    root = demucs2_source()
    assert root is not None
    monkeypatch.setitem(sys.modules, "diffq", types.SimpleNamespace(UniformQuantizer=None, DiffQuantizer=None))
    package = types.ModuleType("_demucs2")
    package.__path__ = [str(root)]
    monkeypatch.setitem(sys.modules, "_demucs2", package)
    modules = {}
    for name in ("utils", "model"):
        spec = importlib.util.spec_from_file_location(f"_demucs2.{name}", root / f"{name}.py")
        assert spec is not None and spec.loader is not None
        modules[name] = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, modules[name])
        spec.loader.exec_module(modules[name])
    for context in (3, 1):
        torch.manual_seed(context)
        reference = modules["model"].Demucs(sources=SOURCES, channels=6, context=context, segment_length=44100).eval()
        ours = DemucsV2(SOURCES, channels=6, context=context, segment=1).eval()
        ours.load_state_dict(reference.state_dict(), strict=True)
        assert [ours.valid_length(n) for n in (999, 44100)] == [reference.valid_length(n) for n in (999, 44100)]
        mix = noise(2, 44100 * 2 + 501, seed=context)
        with torch.no_grad():
            expected = modules["utils"].apply_model(reference, mix, split=True, overlap=0.25)
        torch.testing.assert_close(apply(ours, mix, batch_size=2), expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ files and jobs


def save_v2_file(model: DemucsV2, directory: Path, name: str = "demucs_extra", half: bool = False) -> tuple[Path, str]:
    """demucs 2.0.3's `save_state`: torch.save of the state dict (fp16 where the training asked for it), named by
    the first 8 hex digits of its sha256. Returns the path and the full digest."""
    state = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    path = directory / f"{name}-{digest[:8]}.th"
    path.write_bytes(buffer.getvalue())
    return path, digest


def tiny_config(directory: Path, segment: float = 1) -> Path:
    """The shipped 64-channel config with 4 channels and 1 s segments."""
    plain = json.loads(json.dumps(load_config(SHIPPED.get("demucs2_extra").config)))
    plain["demucs_v2"]["channels"] = 4
    plain["training"]["segment"] = segment
    path = directory / "demucs_v2_tiny.yaml"
    path.write_text(yaml.safe_dump(plain))
    return path


def test_v2_file_loads_only_pinned_and_separates(tmp_path):
    model = tiny(seed=3)
    path, digest = save_v2_file(model, tmp_path, half=True)
    config = tiny_config(tmp_path)
    with pytest.raises(CheckpointError, match="pinned"):
        load_model("demucs_v2", config, path)
    loaded = load_model("demucs_v2", config, path, sha256=digest, device="cpu")
    assert loaded.stems == SOURCES and loaded.model_type == "demucs_v2"
    mix = noise(2, 44100 * 2 + 300, seed=4).numpy()
    stems = separate(loaded, mix)
    assert list(stems) == SOURCES and all(s.shape == mix.shape and np.isfinite(s).all() for s in stems.values())
    # The demucs 2.x CLI's track normalisation around the split of the fp16-stored weights.
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    mono = mix.mean(axis=0)
    mean, std = float(mono.mean()), float(mono.std())
    expected = apply(model, torch.from_numpy((mix - mean) / std)).numpy() * std + mean
    for i, stem in enumerate(SOURCES):
        np.testing.assert_allclose(stems[stem], expected[i], atol=1e-5)

    wider = DemucsV2(SOURCES, channels=6)  # a file of another width than the config says
    other, other_digest = save_v2_file(wider, tmp_path, name="demucs48_hq")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model("demucs_v2", config, other, sha256=other_digest)


def install_demucs2(data_dir: Path, seed: int = 5) -> DemucsV2:
    """A tiny file in demucs' format under the shipped entry's name, pinned, as an admin's models.yaml does."""
    weights = data_dir / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    model = tiny(seed=seed)
    path, digest = save_v2_file(model, weights)
    entry = SHIPPED.get("demucs2_extra")
    override = {
        "name": entry.name,
        "serves": list(entry.serves),
        "model_type": "demucs_v2",
        "config": str(tiny_config(data_dir)),
        "filename": path.name,
        "sha256": digest,
    }
    (data_dir / "models.yaml").write_text(yaml.safe_dump([override]))
    return model


def test_sep_type_13_through_the_api(make_harness, tmp_path):
    data_dir = tmp_path / "h0" / "data"  # where make_harness puts its first harness
    install_demucs2(data_dir)
    h = make_harness()
    algorithms = {a["render_id"]: a for a in h.client.get("/api/app/algorithms").json()}
    assert algorithms[13]["is_available"] is True
    mix = (0.2 * np.random.default_rng(6).standard_normal((2, 44100 + 4410))).astype(np.float32)
    created = h.create(h.user(credits=100, premium=True), wav_bytes(mix, subtype="FLOAT"), sep_type="13")
    assert created["success"] is True, created
    assert h.run_all() >= 1
    done = h.get(created["data"]["hash"])
    assert done["status"] == "done", done
    files = done["data"]["files"]
    assert [f["type"] for f in files] == ["Vocals", "Drums", "Bass", "Other"]  # MVSep's output_stems, its labels
    expected = separate(Runtime.for_data_dir(data_dir, device="cpu").model_for("13:"), mix, residual=False)
    for f, stem in zip(files, ("vocals", "drums", "bass", "other")):
        assert f["download"].endswith(f"_{stem_token(stem)}.wav"), f  # <name>_<stem>.ext, as MVSep names them
        body = h.client.get(f["url"].removeprefix("http://testserver"))
        assert body.status_code == 200
        audio, rate = sf.read(io.BytesIO(body.content), dtype="float32", always_2d=True)
        assert rate == 44100 and audio.shape == (mix.shape[1], 2)
        np.testing.assert_allclose(audio.T, expected[stem], atol=1e-5)  # each file is the model's own stem


def coverage(data_dir: Path) -> dict[int, dict]:
    result = CliRunner().invoke(
        app, ["models", "coverage", "--json"], env={"OPENMVSEP_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    return {row["sep_type"]: row for row in report["sep_types"]}


def test_coverage_counts_13_exactly_when_its_weights_are_here(tmp_path):
    data = tmp_path / "data"
    assert coverage(data)[13]["group"] == "download"  # the shipped entry can fetch demucs_extra
    weights = data / "weights"
    weights.mkdir(parents=True)
    (weights / SHIPPED.get("demucs2").filename).write_bytes(b"x")  # a v2 model that does not serve 13 by default
    assert coverage(data)[13]["group"] == "download"
    (weights / SHIPPED.get("demucs2_extra").filename).write_bytes(b"x")
    assert coverage(data)[13]["group"] == "exact"
    assert RECIPES[13].stems(Catalog.load({}).choice(13, {})) == ["vocals", "drums", "bass", "other"]
