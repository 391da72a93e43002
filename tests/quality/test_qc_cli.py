"""`openmvsep qc ...` as an admin and a submitter run it: real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENMVSEP_DATA_DIR": str(data_dir), "OPENMVSEP_PUBLIC_URL": "http://qc.example"}
    return subprocess.run(
        [sys.executable, "-m", "openmvsep", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "ds"
    r = run("qc", "dataset", "synth", "--tracks", "2", "--seconds", "2", "-o", str(root), data_dir=root.parent / "data")
    assert r.returncode == 0, r.stderr
    return root


def test_synth_add_list(synth: Path, tmp_path: Path):
    assert (synth / "dataset.yaml").is_file() and sorted(p.name for p in synth.iterdir() if p.is_dir()) == [
        "song_000",
        "song_001",
    ]
    assert run("db", "upgrade", data_dir=tmp_path).returncode == 0  # admin commands need the server's database
    r = run("qc", "dataset", "add", str(synth), data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "dataset_type 0: Synthetic (2 tracks" in r.stdout
    again = run("qc", "dataset", "add", str(synth), data_dir=tmp_path)
    assert again.returncode == 1 and "already registered" in again.stderr
    assert run("qc", "dataset", "add", str(synth), "--replace", data_dir=tmp_path).returncode == 0
    listed = run("qc", "dataset", "list", data_dir=tmp_path)
    assert "Synthetic" in listed.stdout and (tmp_path / "storage" / "public" / "synthetic.zip").is_file()
    broken = run("qc", "dataset", "add", str(tmp_path / "nowhere"), data_dir=tmp_path)
    assert broken.returncode == 1 and "not a folder" in broken.stderr
    refused = run("qc", "dataset", "synth", "--tracks", "1", "-o", str(synth), data_dir=tmp_path)
    assert refused.returncode == 2 and "not empty" in refused.stderr


def test_score_prints_the_entry_as_json(synth: Path, tmp_path: Path):
    archive = tmp_path / "entry.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for song in ("song_000", "song_001"):
            z.write(synth / song / "mixture.wav", f"{song}_vocals.wav")  # the mixture as the vocals: input SDR
            z.write(synth / song / "instrum.wav", f"{song}_instrum.wav")  # a perfect instrumental
    r = run("qc", "score", "--dataset", str(synth), str(archive), data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["sdr"]) == {"vocals", "instrum"} and set(out["tracks"]) == {"song_000", "song_001"}
    for song in ("song_000", "song_001"):
        ref, _ = sf.read(synth / song / "vocals.wav", dtype="float64")
        mix, _ = sf.read(synth / song / "mixture.wav", dtype="float64")
        expected = 10 * np.log10((np.sum(ref**2) + 1e-8) / (np.sum((ref - mix) ** 2) + 1e-8))
        assert out["tracks"][song]["vocals"] == pytest.approx(expected, abs=1e-9)
        assert out["tracks"][song]["instrum"] > 100  # finite: ε keeps a perfect estimate finite
    assert out["sdr"]["vocals"] == pytest.approx(np.mean([out["tracks"][s]["vocals"] for s in out["tracks"]]))
    for metric in (
        "si_sdr",
        "l1_freq",
        "log_wmse",
        "aura_stft",
        "aura_mrstft",
        "bleedless",
        "fullness",
        "framewise_sdr",
    ):
        assert set(out[metric]) == {"vocals", "instrum"}, metric
    assert out["track_metrics"]["song_000"]["instrum"]["fullness"] == 100.0
    assert any("infinite framewise SDR" in w for w in out["warnings"])

    quick = run("qc", "score", "--dataset", str(synth), str(archive), "--sdr-only", data_dir=tmp_path)
    fast = json.loads(quick.stdout)
    assert fast["sdr"] == out["sdr"] and "si_sdr" not in fast


def test_score_refuses_a_bad_zip_with_the_reason(synth: Path, tmp_path: Path):
    archive = tmp_path / "entry.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(synth / "song_000" / "vocals.wav", "song_000_vocals.wav")
    r = run("qc", "score", "--dataset", str(synth), str(archive), data_dir=tmp_path)
    assert r.returncode == 1 and "Missing files for stem vocals: song_001_vocals.wav" in r.stderr
