"""Neural separations through the whole API: an admin's registry entry makes an option runnable."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openmvsep.engine.runtime import Runtime
from openmvsep.engine.separator import separate

from conftest import wav_bytes

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "engine" / "bs_roformer"
pytest.importorskip("openmvsep.engine.models.roformer")


def install(data_dir: Path, entries: str, files: dict[str, bytes | Path]) -> None:
    weights = data_dir / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, weights / name)
        else:
            (weights / name).write_bytes(content)
    (data_dir / "models.yaml").write_text(entries)


ENTRIES = f"""
- name: tiny_bs
  serves: ["40:4"]
  model_type: bs_roformer
  config: {FIXTURE / "config.yaml"}
  filename: tiny_bs.safetensors
- name: broken_mel
  serves: ["48:0"]
  model_type: mel_band_roformer
  config: {FIXTURE.parent / "mel_band_roformer" / "config.yaml"}
  filename: broken.safetensors
"""


@pytest.fixture
def h(make_harness, tmp_path):
    data = tmp_path / "h0" / "data"  # where make_harness puts its first harness
    install(data, ENTRIES, {"tiny_bs.safetensors": FIXTURE / "weights.safetensors", "broken.safetensors": b"\0" * 64})
    return make_harness()


def test_catalog_shows_runnable_options(h):
    algos = {a["render_id"]: a for a in h.client.get("/api/app/algorithms").json()}
    assert algos[40]["is_available"] is True
    field = next(f for f in algos[40]["algorithm_fields"] if f["name"] == "add_opt1")
    assert field["available_keys"] == ["4"]
    assert algos[48]["is_available"] is True  # its weights are there, even if they turn out to be broken
    assert algos[20]["is_available"] is False


def test_bs_roformer_job_end_to_end(h):
    token = h.user()
    mix = (0.2 * np.random.default_rng(0).standard_normal((2, 44100 * 2))).astype(np.float32)
    created = h.create(token, wav_bytes(mix, subtype="FLOAT"), sep_type="40", add_opt1="4", add_opt2="8")
    assert created["success"] is True, created
    assert h.run_all() == 1
    done = h.get(created["data"]["hash"])
    assert done["status"] == "done", done
    assert [f["type"] for f in done["data"]["files"]] == ["Vocals", "Instrumental"]
    stems = {}
    for f in done["data"]["files"]:
        data, rate = sf.read(
            io.BytesIO(h.client.get(f["url"].removeprefix("http://testserver")).content),
            dtype="float32",
            always_2d=True,
        )
        assert rate == 44100
        stems[f["type"]] = data.T
    np.testing.assert_allclose(stems["Vocals"] + stems["Instrumental"], mix, atol=1e-5)
    assert np.abs(stems["Vocals"]).max() > 0


def test_broken_checkpoint_fails_the_job_and_the_worker_goes_on(h):
    first, second = h.user("a@example.com"), h.user("b@example.com")
    mix = wav_bytes((0.1 * np.ones((2, 22050))).astype(np.float32))
    bad = h.create(first, mix, sep_type="48", add_opt1="0")["data"]["hash"]
    good = h.create(second, mix, sep_type="40", add_opt1="4")["data"]["hash"]
    h.run_all()
    failed = h.get(bad)
    assert failed["status"] == "failed" and "broken_mel cannot be loaded" in failed["data"]["message"]
    assert h.get(good)["status"] == "done"


def test_unavailable_options_say_what_to_install(make_harness, tmp_path):
    """Under the strict option policy an option that cannot run is refused, naming what would make it run."""
    install(tmp_path / "h0" / "data", ENTRIES, {"tiny_bs.safetensors": FIXTURE / "weights.safetensors"})
    h = make_harness(option_policy="strict")
    token = h.user()
    mix = wav_bytes(np.zeros((2, 4410), np.float32))
    r = h.create(token, mix, sep_type="40", add_opt1="81")
    assert r["status"] == 400 and "cannot run on this server" in r["message"]
    assert "openmvsep models download --sep-type 40" in r["message"]
    r = h.create(token, mix, sep_type="25", add_opt1="4")
    assert r["status"] == 400 and "openmvsep models download --sep-type 25" in r["message"]
    assert "mdx23c_vocals_msst" in r["message"]


def test_ensemble_averages_its_members(make_harness, tmp_path):
    """sep_type 26 option 5 (Mel + BS RoFormer): the admin's entries take the shipped names."""
    data = tmp_path / "h0" / "data"
    mel = FIXTURE.parent / "mel_band_roformer"
    install(
        data,
        f"""
- {{name: bs_roformer_viperx_1297, serves: ["40:4"], model_type: bs_roformer, config: {FIXTURE / "config.yaml"},
   filename: bs.safetensors}}
- {{name: mel_band_roformer_kj, serves: ["48:0"], model_type: mel_band_roformer, config: {mel / "config.yaml"},
   filename: mel.safetensors}}
""",
        {"bs.safetensors": FIXTURE / "weights.safetensors", "mel.safetensors": mel / "weights.safetensors"},
    )
    h = make_harness()
    token = h.user(credits=100, premium=True)
    mix = (0.2 * np.random.default_rng(5).standard_normal((2, 44100))).astype(np.float32)
    created = h.create(token, wav_bytes(mix, subtype="FLOAT"), sep_type="26", add_opt1="0", add_opt2="5")
    assert created["success"] is True, created
    h.run_all()
    files = {f["type"]: f for f in h.get(created["data"]["hash"])["data"]["files"]}
    vocals, _ = sf.read(
        io.BytesIO(h.client.get(files["Vocals"]["url"].removeprefix("http://testserver")).content),
        dtype="float32",
        always_2d=True,
    )
    runtime = Runtime.for_data_dir(data, device="cpu")
    parts = [
        separate(runtime.load(runtime.registry.get(n)), mix, residual=False)["vocals"]
        for n in ("mel_band_roformer_kj", "bs_roformer_viperx_1297")
    ]
    np.testing.assert_allclose(vocals.T, (parts[0] + parts[1]) / 2, atol=1e-5)
