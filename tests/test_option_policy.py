"""Options this server cannot run: served by the field's best runnable option and disclosed (`substitute`, the
default), or refused (`strict`); the catalog's `default_key` names what runs here.

Models are tiny random-weight checkpoints from the shrunk public configs in tests/fixtures/engine, registered the
way an admin does: `<data dir>/models.yaml` naming safetensors files in `<data dir>/weights`.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from openmvsep.service.catalog import Catalog

from conftest import wav_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "engine"
pytest.importorskip("openmvsep.engine.models.roformer")

# One tiny vocal model answers every two-stem option below (its first stem is its vocals); the ensemble 26:5 takes
# the shipped names of its members.
SERVED_BY_BS = ["40:4", "46:0", "34:0", "47:1", "22:1"]


def install(data_dir: Path, entries: list[dict], weights: dict[str, Path | bytes]) -> None:
    folder = data_dir / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in weights.items():
        if isinstance(content, Path):
            shutil.copyfile(content, folder / name)
        else:
            (folder / name).write_bytes(content)
    (data_dir / "models.yaml").write_text(yaml.safe_dump(entries))


def tiny_models(data_dir: Path) -> None:
    install(
        data_dir,
        [
            {
                "name": "bs_roformer_viperx_1297",
                "serves": SERVED_BY_BS,
                "model_type": "bs_roformer",
                "config": str(FIXTURES / "bs_roformer" / "config.yaml"),
                "filename": "bs.safetensors",
            },
            {  # a name of its own: the shipped mdx23c entry serves 25:4 under a name the admin does not override
                "name": "tiny_for_25",
                "serves": ["25:4"],
                "model_type": "bs_roformer",
                "config": str(FIXTURES / "bs_roformer" / "config.yaml"),
                "filename": "bs.safetensors",
            },
            {
                "name": "mel_band_roformer_kj",
                "serves": ["48:0"],
                "model_type": "mel_band_roformer",
                "config": str(FIXTURES / "mel_band_roformer" / "config.yaml"),
                "filename": "mel.safetensors",
            },
        ],
        {
            "bs.safetensors": FIXTURES / "bs_roformer" / "weights.safetensors",
            "mel.safetensors": FIXTURES / "mel_band_roformer" / "weights.safetensors",
        },
    )


def algorithms(h) -> dict[int, dict]:
    scopes = "single_upload,no_upload,matchering_upload"
    return {a["render_id"]: a for a in h.client.get("/api/app/algorithms", params={"scopes": scopes}).json()}


def mvsep_defaults(element: dict) -> dict[str, str]:
    """What a client that preselects MVSep's default of every field sends."""
    return {f["name"]: str(f["mvsep_default_key"]) for f in element["algorithm_fields"] if f["mvsep_default_key"]}


def expected_substitutions(element: dict) -> dict[str, dict[str, str]]:
    return {
        f["name"]: {"requested": str(f["mvsep_default_key"]), "used": f["default_key"]}
        for f in element["algorithm_fields"]
        if f["available_keys"] and str(f["mvsep_default_key"]) not in f["available_keys"]
    }


def create(h, token: str, sep_type: int, form: dict[str, str]) -> dict:
    audio = wav_bytes((0.2 * np.random.default_rng(sep_type).standard_normal((2, 22050))).astype(np.float32))
    if sep_type == 68:  # Matchering takes two different files
        reference = wav_bytes((0.4 * np.random.default_rng(1).standard_normal((2, 22050))).astype(np.float32))
        files = {
            "target_audiofile": ("t.wav", audio, "audio/wav"),
            "reference_audiofile": ("r.wav", reference, "audio/wav"),
        }
        data = {"api_token": token, "sep_type": "68", "output_format": "0", **form}
        r = h.client.post("/api/separation/create", data=data, files=files)
        return {"status": r.status_code, **r.json()}
    return h.create(token, audio, sep_type=str(sep_type), output_format="0", **form)


@pytest.fixture
def substitute(make_harness, tmp_path):
    tiny_models(tmp_path / "h0" / "data")
    return make_harness()


def test_every_default_of_every_runnable_sep_type_runs_and_is_disclosed(substitute, make_harness, tmp_path):
    h = substitute
    token = h.user(credits=1000, premium=True)
    listed = algorithms(h)
    runnable = sorted(s for s, a in listed.items() if a["is_available"])
    assert {22, 25, 26, 34, 40, 46, 47, 48, 55, 68} <= set(runnable)
    hashes = {}
    for sep_type in runnable:
        created = create(h, token, sep_type, mvsep_defaults(listed[sep_type]))
        assert created["success"] is True, (sep_type, created)
        hashes[sep_type] = created["data"]["hash"]
    h.run_all()
    swapped = 0
    for sep_type, hash_value in hashes.items():
        done = h.get(hash_value)
        assert done["status"] == "done", (sep_type, done)
        expected = expected_substitutions(listed[sep_type])
        assert done["data"].get("substitutions", {}) == expected, sep_type
        if expected:
            swapped += 1
            description = done["data"]["algorithm_description"]
            assert description.startswith("Ran on this server with "), description
            field = next(f for f in listed[sep_type]["algorithm_fields"] if f["name"] in expected)
            used = expected[field["name"]]["used"]
            assert yaml.safe_load(field["options"])[used] in description  # names the model that ran
    assert swapped >= 5  # MVSep's defaults are mostly its own models: 40's 81, 55's 1, 48's 4, ...

    # the same requests under `strict`: the old 400, naming what to install, and nothing stored
    strict = make_harness(option_policy="strict")
    tiny_models(tmp_path / "h1" / "data")
    strict.ctx.catalog.refresh()
    token = strict.user(credits=1000, premium=True)
    for sep_type in runnable:
        r = create(strict, token, sep_type, mvsep_defaults(listed[sep_type]))
        if expected_substitutions(listed[sep_type]):
            assert r["status"] == 400 and "cannot run on this server" in r["data"]["message"], (sep_type, r)
        else:
            assert r["success"] is True, (sep_type, r)


def test_history_discloses_the_substitute(substitute):
    token = substitute.user()
    created = create(substitute, token, 40, {"add_opt1": "81"})
    assert created["success"] is True, created
    item = substitute.client.get("/api/app/separation_history", params={"api_token": token}).json()["data"][0]
    assert item["substitutions"] == {"add_opt1": {"requested": "81", "used": "4"}}


def test_a_sep_type_with_nothing_runnable_names_its_best_public_model(substitute):
    token = substitute.user()
    r = create(substitute, token, 20, {"add_opt1": "1"})
    assert r["status"] == 400
    assert "openmvsep models download --sep-type 20" in r["data"]["message"]


def test_invalid_keys_are_refused_whatever_the_policy(substitute):
    r = create(substitute, substitute.user(), 40, {"add_opt1": "nonsense"})
    assert r["status"] == 400 and "Invalid value" in r["data"]["message"]


# ------------------------------------------------------------------------------------------ ranking


def ranked_catalog(scores: dict[str, tuple[float, float]], runnable: list[str]) -> Catalog:
    return Catalog.load(
        {40: {"add_opt1": runnable}}, score=lambda sep_type, key: scores.get(f"{sep_type}:{key}", (0.0, -math.inf))
    )


def test_rank_decides_then_sdr_then_mvsep_default():
    catalog = ranked_catalog({"40:3": (1.0, 10.0), "40:5": (1.0, 11.0), "40:29": (0.0, 99.0)}, ["3", "4", "5", "29"])
    assert catalog.best_keys(40, "add_opt1") == ["5", "3", "29", "4"]
    choice = catalog.resolve(40, {"add_opt1": "81"}, substitute=True)
    assert choice["model_type"] == "5" and choice.substitutions() == {"add_opt1": {"requested": "81", "used": "5"}}
    # unscored options: MVSep's default first when it runs, then the stored order
    plain = ranked_catalog({}, ["4", "81", "3"])
    assert plain.best_keys(40, "add_opt1") == ["81", "3", "4"]
    assert plain.resolve(40, {}).substitutions() == {}
    element = next(e for e in plain.list() if e["render_id"] == 40)
    field = element["algorithm_fields"][0]
    assert (field["default_key"], field["mvsep_default_key"]) == ("81", "81")


def test_strict_resolution_keeps_the_key_asked_for():
    catalog = ranked_catalog({}, ["4"])
    choice = catalog.resolve(40, {"add_opt1": "81"})
    assert choice["model_type"] == "81" and catalog.unavailable_reason(choice)
    # an empty field runs the best key here, and says MVSep's default could not run
    assert catalog.resolve(40, {}).substitutions() == {"add_opt1": {"requested": "81", "used": "4"}}


def test_the_listing_default_is_the_best_runnable_key(make_harness, tmp_path):
    data = tmp_path / "h0" / "data"
    install(
        data,
        [
            {"name": "a", "serves": ["40:4"], "model_type": "bs_roformer", "filename": "a.bin", "sdr": 12.9},
            {"name": "b", "serves": ["40:3"], "model_type": "bs_roformer", "filename": "b.bin", "rank": 2},
        ],
        {"a.bin": b"x", "b.bin": b"x"},
    )
    h = make_harness()
    field = next(f for f in algorithms(h)[40]["algorithm_fields"] if f["name"] == "add_opt1")
    assert (field["default_key"], field["mvsep_default_key"], field["available_keys"]) == ("3", "81", ["3", "4"])
