"""Quality Checker datasets: the synthetic generator, manifest and file validation, the mixtures zip."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from openmvsep.quality.datasets import DatasetError, Song, load_dataset, write_mixtures_zip
from openmvsep.quality.synth import FORMANT_BANDWIDTHS, SYNTH_STEMS, _apply_formants, synthesize_dataset

TRACKS, SECONDS, RATE = 3, 2.0, 44100
FRAMES = int(SECONDS * RATE)
SONGS = ["song_000", "song_001", "song_002"]
PARTS = ("drums", "bass", "other", "vocals")  # what the mixture is the sum of


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    root = tmp_path_factory.mktemp("synth") / "ds"
    synthesize_dataset(
        root,
        tracks=TRACKS,
        seconds=SECONDS,
        seed=7,
        name="Synth Test",
        progress=lambda *done_total: calls.append(done_total),
    )
    return root, calls


@pytest.fixture
def root(synth_run: tuple[Path, list], tmp_path: Path) -> Path:
    """A private copy of the synthetic dataset, free to break."""
    return Path(shutil.copytree(synth_run[0], tmp_path / "ds"))


def read_int16(path: Path) -> np.ndarray:
    data, rate = soundfile.read(path, dtype="int16", always_2d=True)
    assert rate == RATE
    return data.astype(np.int32)


def rewrite(path: Path, data: np.ndarray, rate: int = RATE) -> None:
    soundfile.write(path, data, rate, subtype="PCM_16")


def edit_manifest(root: Path, **changes: object) -> None:
    manifest = yaml.safe_load((root / "dataset.yaml").read_text())
    manifest.update(changes)
    (root / "dataset.yaml").write_text(yaml.safe_dump(manifest))


def load_error(root: Path) -> str:
    with pytest.raises(DatasetError) as caught:
        load_dataset(root)
    return str(caught.value)


# --------------------------------------------------------------------------------------------
# load_dataset on a good dataset
# --------------------------------------------------------------------------------------------


def test_load_synthesised_dataset(root: Path) -> None:
    dataset = load_dataset(root)
    assert dataset.root == root
    assert (dataset.name, dataset.slug, dataset.dataset_type) == ("Synth Test", "synth_test", 0)
    assert dataset.stems == SYNTH_STEMS == ("vocals", "instrum", "bass", "drums", "other")
    assert dataset.sample_rate == RATE
    assert dataset.songs == tuple(Song(name, FRAMES, 2) for name in SONGS)
    assert "synthetic" in dataset.description.lower()
    assert "openmvsep qc dataset synth" in dataset.description and "tracks=3" in dataset.description
    assert dataset.mixture_path("song_001") == root / "song_001" / "mixture.wav"
    assert dataset.reference_path("song_002", "bass") == root / "song_002" / "bass.wav"

    record = json.loads(json.dumps(dataset.to_record()))
    assert record == {
        "name": "Synth Test",
        "slug": "synth_test",
        "dataset_type": 0,
        "stems": list(SYNTH_STEMS),
        "sample_rate": RATE,
        "description": dataset.description,
        "songs": [{"name": name, "frames": FRAMES, "channels": 2} for name in SONGS],
    }


def test_progress_reports_each_track(synth_run: tuple[Path, list[tuple[int, int]]]) -> None:
    assert synth_run[1] == [(1, 3), (2, 3), (3, 3)]


def test_unknown_song_or_stem_is_refused(root: Path) -> None:
    dataset = load_dataset(root)
    with pytest.raises(DatasetError, match="no song 'song_009'"):
        dataset.mixture_path("song_009")
    with pytest.raises(DatasetError, match="no song '../song_000'"):
        dataset.reference_path("../song_000", "bass")
    with pytest.raises(DatasetError, match="no stem 'piano'"):
        dataset.reference_path("song_000", "piano")


def test_manifest_defaults_and_unknown_keys(root: Path) -> None:
    manifest = {
        "name": " Multi Song (v2)! ",
        "dataset_type": 1,
        "stems": ["vocals", "back-instrum"],
        "sample_rate": RATE,
    }
    (root / "dataset.yaml").write_text(yaml.safe_dump({**manifest, "homepage": "ignored"}))
    for song in SONGS:
        (root / song / "vocals.wav").rename(root / song / "back-instrum.wav")
        shutil.copy(root / song / "bass.wav", root / song / "vocals.wav")
    dataset = load_dataset(root)
    assert (dataset.name, dataset.slug, dataset.description) == ("Multi Song (v2)!", "multi_song_v2", "")
    assert (dataset.dataset_type, dataset.stems) == (1, ("vocals", "back-instrum"))

    edit_manifest(root, slug="multisong", description="The 100 songs")
    dataset = load_dataset(root)
    assert (dataset.slug, dataset.description) == ("multisong", "The 100 songs")


def test_flac_files_are_accepted(root: Path) -> None:
    song = root / "song_001"
    for name in ("mixture", "vocals"):
        data = read_int16(song / f"{name}.wav")
        soundfile.write(song / f"{name}.flac", data.astype(np.int16), RATE, subtype="PCM_16")
        (song / f"{name}.wav").unlink()
    dataset = load_dataset(root)
    assert dataset.songs[1] == Song("song_001", FRAMES, 2)
    assert dataset.mixture_path("song_001") == song / "mixture.flac"
    assert dataset.reference_path("song_001", "vocals") == song / "vocals.flac"


# --------------------------------------------------------------------------------------------
# load_dataset's refusals: each names the file and the problem
# --------------------------------------------------------------------------------------------


def test_missing_manifest(root: Path) -> None:
    (root / "dataset.yaml").unlink()
    message = load_error(root)
    assert str(root / "dataset.yaml") in message and "missing" in message


def test_not_a_folder(tmp_path: Path) -> None:
    assert "not a folder" in load_error(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"name": 5}, "name"),
        ({"name": "  "}, "name"),
        ({"dataset_type": "one"}, "dataset_type"),
        ({"dataset_type": -1}, "dataset_type"),
        ({"dataset_type": True}, "dataset_type"),
        ({"dataset_type": None}, "dataset_type"),
        ({"sample_rate": 44100.0}, "sample_rate"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"stems": "vocals"}, "stems"),
        ({"stems": []}, "stems"),
        ({"stems": ["Vocals"]}, "stems"),
        ({"stems": ["vocals", 3]}, "stems"),
        ({"stems": ["vocals", "vocals"]}, "stems"),
        ({"stems": ["mixture"]}, "stems"),
        ({"slug": "Bad Slug"}, "slug"),
        ({"description": ["a", "list"]}, "description"),
    ],
)
def test_bad_manifest_values(root: Path, changes: dict, key: str) -> None:
    edit_manifest(root, **changes)
    message = load_error(root)
    assert message.startswith(f"{root / 'dataset.yaml'}: {key} must be"), message
    assert f"found {next(iter(changes.values()))!r}" in message


def test_missing_manifest_key_and_bad_yaml(root: Path) -> None:
    manifest = yaml.safe_load((root / "dataset.yaml").read_text())
    del manifest["sample_rate"]
    (root / "dataset.yaml").write_text(yaml.safe_dump(manifest))
    assert "sample_rate must be a positive integer (Hz), found nothing" in load_error(root)

    (root / "dataset.yaml").write_text("name: [unclosed\n")
    assert "not valid YAML" in load_error(root)
    (root / "dataset.yaml").write_text("- just\n- a list\n")
    assert "expected a mapping" in load_error(root)
    (root / "dataset.yaml").write_text("{name: '!!!', dataset_type: 0, stems: [a], sample_rate: 8000}\n")
    assert "add a slug" in load_error(root)


def test_missing_stem_file(root: Path) -> None:
    (root / "song_001" / "bass.wav").unlink()
    assert load_error(root) == f"{root / 'song_001'}: bass.wav (or .flac) is missing"


def test_missing_mixture(root: Path) -> None:
    (root / "song_002" / "mixture.wav").unlink()
    assert load_error(root) == f"{root / 'song_002'}: mixture.wav (or .flac) is missing"


def test_wav_and_flac_for_one_stem(root: Path) -> None:
    shutil.copy(root / "song_000" / "drums.wav", root / "song_000" / "drums.flac")
    message = load_error(root)
    assert str(root / "song_000") in message and "both drums.wav and drums.flac" in message


def test_wrong_sample_rate(root: Path) -> None:
    path = root / "song_002" / "drums.wav"
    rewrite(path, read_int16(path).astype(np.int16), rate=48000)
    assert load_error(root) == f"{path}: sample rate 48000 Hz, but dataset.yaml says 44100 Hz"


def test_frame_mismatch(root: Path) -> None:
    path = root / "song_000" / "vocals.wav"
    rewrite(path, read_int16(path)[:-1].astype(np.int16))
    assert load_error(root) == f"{path}: {FRAMES - 1} frames, but the mixture has {FRAMES}"


def test_channel_mismatch(root: Path) -> None:
    path = root / "song_001" / "other.wav"
    rewrite(path, read_int16(path)[:, 0].astype(np.int16))
    assert load_error(root) == f"{path}: 1 channels, but the mixture has 2"


def test_unreadable_audio(root: Path) -> None:
    path = root / "song_000" / "instrum.wav"
    path.write_bytes(b"this is not audio" * 10)
    message = load_error(root)
    assert message.startswith(f"{path}: not readable audio")


@pytest.mark.parametrize("bad_name", [".hidden", "bad*name", "semi;colon", "quote'd"])
def test_unsafe_song_name(root: Path, bad_name: str) -> None:
    (root / "song_001").rename(root / bad_name)
    message = load_error(root)
    assert message.startswith(f"{root / bad_name}: unsafe song folder name {bad_name!r}"), message


def test_song_names_with_spaces_dots_dashes_are_fine(root: Path) -> None:
    (root / "song_001").rename(root / "My Song - v1.2")
    assert [s.name for s in load_dataset(root).songs] == ["My Song - v1.2", "song_000", "song_002"]


def test_no_songs(root: Path) -> None:
    for song in SONGS:
        shutil.rmtree(root / song)
    assert "no songs" in load_error(root)


def test_every_broken_song_is_listed(root: Path) -> None:
    (root / "song_000" / "bass.wav").unlink()
    (root / "song_002" / "other.wav").unlink()
    message = load_error(root)
    assert message.splitlines() == [
        f"{root}: 2 of 3 songs have problems:",
        f"{root / 'song_000'}: bass.wav (or .flac) is missing",
        f"{root / 'song_002'}: other.wav (or .flac) is missing",
    ]


# --------------------------------------------------------------------------------------------
# The mixtures zip
# --------------------------------------------------------------------------------------------


def test_mixtures_zip_holds_exactly_the_mixtures(root: Path, tmp_path: Path) -> None:
    song = root / "song_002"
    soundfile.write(song / "mixture.flac", read_int16(song / "mixture.wav").astype(np.int16), RATE, subtype="PCM_16")
    (song / "mixture.wav").unlink()
    dataset = load_dataset(root)
    dest = tmp_path / "public" / "synth_test.zip"

    assert write_mixtures_zip(dataset, dest) == dest
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left behind
    with zipfile.ZipFile(dest) as archive:
        names = ["song_000_mixture.wav", "song_001_mixture.wav", "song_002_mixture.flac"]
        assert archive.namelist() == names
        for name, info in zip(names, archive.infolist()):
            assert info.compress_type == zipfile.ZIP_STORED
            song_name = name.rsplit("_mixture", 1)[0]
            assert archive.read(name) == (root / song_name / f"mixture{Path(name).suffix}").read_bytes()


def test_failed_zip_leaves_nothing(root: Path, tmp_path: Path) -> None:
    dataset = load_dataset(root)
    (root / "song_001" / "mixture.wav").unlink()
    dest = tmp_path / "out" / "mixtures.zip"
    with pytest.raises(DatasetError, match="mixture.wav"):
        write_mixtures_zip(dataset, dest)
    assert list(dest.parent.iterdir()) == []


# --------------------------------------------------------------------------------------------
# The synthetic dataset itself
# --------------------------------------------------------------------------------------------


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synthesis_is_deterministic(tmp_path: Path) -> None:
    first = file_bytes(synthesize_dataset(tmp_path / "a", tracks=2, seconds=1.0, seed=3))
    again = file_bytes(synthesize_dataset(tmp_path / "b", tracks=2, seconds=1.0, seed=3))
    other_seed = file_bytes(synthesize_dataset(tmp_path / "c", tracks=2, seconds=1.0, seed=4))
    assert len(first) == 1 + 2 * 6
    assert first == again
    for name, content in first.items():
        if name.endswith(".wav"):
            assert other_seed[name] != content, name
    for stem in ("mixture", *SYNTH_STEMS):  # tracks differ from one another too
        assert first[f"song_000/{stem}.wav"] != first[f"song_001/{stem}.wav"]


def test_files_are_16_bit_pcm_and_sum_exactly(synth_run: tuple[Path, list]) -> None:
    root = synth_run[0]
    for song in SONGS:
        for stem in ("mixture", *SYNTH_STEMS):
            info = soundfile.info(root / song / f"{stem}.wav")
            header = (info.format, info.subtype, info.samplerate, info.channels, info.frames)
            assert header == ("WAV", "PCM_16", RATE, 2, FRAMES)
        audio = {stem: read_int16(root / song / f"{stem}.wav") for stem in ("mixture", *SYNTH_STEMS)}
        assert np.array_equal(audio["mixture"], sum(audio[part] for part in PARTS))
        assert np.array_equal(audio["instrum"], audio["mixture"] - audio["vocals"])
        assert np.array_equal(audio["instrum"], audio["drums"] + audio["bass"] + audio["other"])


def test_every_stem_sounds_in_every_track_without_clipping(synth_run: tuple[Path, list]) -> None:
    root = synth_run[0]
    for song in SONGS:
        for stem in ("mixture", *SYNTH_STEMS):
            audio = read_int16(root / song / f"{stem}.wav")
            rms_per_channel = np.sqrt(np.mean(audio.astype(float) ** 2, axis=0))
            assert (rms_per_channel > 300).all(), (song, stem, rms_per_channel)  # about -40 dBFS or louder
            assert np.abs(audio).max() < 32767, (song, stem)
        # the parts are panned differently: their left/right balances are not all the same
        balances = []
        for part in PARTS:
            audio = read_int16(root / song / f"{part}.wav").astype(float)
            balances.append(np.sum(audio[:, 1] ** 2) / np.sum(audio**2))
        assert max(balances) - min(balances) > 0.05, balances


def test_other_sample_rate_loads(tmp_path: Path) -> None:
    root = synthesize_dataset(tmp_path / "ds", tracks=1, seconds=1.0, sample_rate=22050, name="Low", dataset_type=5)
    dataset = load_dataset(root)
    assert (dataset.sample_rate, dataset.dataset_type, dataset.slug) == (22050, 5, "low")
    assert dataset.songs == (Song("song_000", 22050, 2),)


def test_synthesis_refuses_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        synthesize_dataset(tmp_path / "full", tracks=1, seconds=1.0)
    for tracks, seconds, rate in ((0, 1.0, RATE), (1, 0.5, RATE), (1, float("nan"), RATE), (1, 1.0, 4000)):
        with pytest.raises(ValueError):
            synthesize_dataset(tmp_path / "new", tracks=tracks, seconds=seconds, sample_rate=rate)


def test_formant_filter_matches_one_long_fft_when_formants_hold_still() -> None:
    """The frame-by-frame filter equals the zero-phase filter applied to the whole signal at once."""
    rate, hop, n = 44100, 256, 20000
    formants = np.tile([730.0, 1090.0, 2440.0], (n // hop + 2, 1))
    source = np.zeros(n)
    source[[0, 3001, 12345, n - 1]] = [1.0, -0.5, 0.8, 0.3]

    padded_length = 4 * n  # what rings before sample 0 wraps to the end, past the first n samples
    hz = np.fft.rfftfreq(padded_length, 1 / rate)
    response = np.ones_like(hz)
    for f, bandwidth in zip(formants[0], FORMANT_BANDWIDTHS):
        response *= f**2 / np.sqrt((f**2 - hz**2) ** 2 + (bandwidth * hz) ** 2)
    response[hz > 6000] = 0.0
    expected = np.fft.irfft(np.fft.rfft(source, padded_length) * response, padded_length)
    filtered = _apply_formants(source, rate, formants, hop)
    assert np.max(np.abs(filtered - expected[:n])) < 1e-3 * np.max(np.abs(expected))
