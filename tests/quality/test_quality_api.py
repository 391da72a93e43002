"""The Quality Checker end to end: add → queue → scored entry → leaderboard → delete; bad uploads leave nothing."""

from __future__ import annotations

import contextlib
import io
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openmvsep.quality.synth import synthesize_dataset
from openmvsep.service import lifecycle
from openmvsep.store.models import QcEntry, QcScore

from conftest import Harness, make_settings
from processes import postgres_database

TRACKS, SECONDS = 3, 2.0


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return synthesize_dataset(tmp_path_factory.mktemp("qc") / "synth", tracks=TRACKS, seconds=SECONDS)


@pytest.fixture
def qc(tmp_path, dataset_dir) -> Harness:
    h = Harness(make_settings(tmp_path))
    h.ctx.quality.register_dataset(dataset_dir)
    yield h
    h.close()


@pytest.fixture
def sdr_only(make_harness, dataset_dir) -> Harness:
    h = make_harness(qc_secondary_metrics=False)
    h.ctx.quality.register_dataset(dataset_dir)
    return h


def songs(dataset_dir: Path) -> list[str]:
    return sorted(p.name for p in dataset_dir.iterdir() if p.is_dir())


def reference(dataset_dir: Path, song: str, stem: str) -> np.ndarray:
    data, _ = sf.read(dataset_dir / song / f"{stem}.wav", dtype="int16", always_2d=True)
    return data


def noisy(ref: np.ndarray, level: float, seed: int) -> np.ndarray:
    """The reference plus white noise `level` × its RMS (int16, as a submitter would write it)."""
    rng = np.random.default_rng(seed)
    rms = np.sqrt(np.mean(ref.astype(np.float64) ** 2)) or 1.0
    out = ref + rng.standard_normal(ref.shape) * level * rms
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def global_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """QUALITY.md §1.1 written out independently: soundfile's float64 scale, channels pooled, ε = 1e-8."""
    s, e = ref.astype(np.float64) / 32768, est.astype(np.float64) / 32768
    return float(10 * np.log10((np.sum(s**2) + 1e-8) / (np.sum((s - e) ** 2) + 1e-8)))


def make_zip(files: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data, compress_type=compression)
    return buf.getvalue()


def wav(data: np.ndarray, rate: int = 44100, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, subtype="PCM_16", format=fmt)
    return buf.getvalue()


def submission(dataset_dir: Path, levels: dict[str, float], seed: int = 0) -> tuple[bytes, dict]:
    """A zip with one noisy estimate per (song, stem in levels) and the SDRs those files must score."""
    files, expected = {}, {}
    for i, song in enumerate(songs(dataset_dir)):
        for j, (stem, level) in enumerate(levels.items()):
            ref = reference(dataset_dir, song, stem)
            est = noisy(ref, level, seed * 100 + i * 10 + j)
            files[f"{song}_{stem}.wav"] = wav(est)
            expected.setdefault(stem, []).append(global_sdr(ref, est))
    return make_zip(files), {stem: float(np.mean(v)) for stem, v in expected.items()}


def add(h: Harness, token: str, zip_bytes: bytes, **fields):
    data = {
        "api_token": token,
        "algo_name": "Test algorithm",
        "main_text": "Notes",
        "dataset_type": "0",
        "password": "secret-pass",
        **fields,
    }
    return h.client.post(
        "/api/quality_checker/add", data=data, files={"zipfile": ("entry.zip", zip_bytes, "application/zip")}
    )


def nothing_left(h: Harness) -> bool:
    with h.ctx.db.reader() as s:
        rows = s.query(QcEntry).count() + s.query(QcScore).count()
    stored = list((h.ctx.storage.root / "qc").glob("*")) if (h.ctx.storage.root / "qc").exists() else []
    scratch = list((h.ctx.storage.root / ".scratch").glob("*"))
    return rows == 0 and not stored and not scratch


def test_entry_lifecycle(qc: Harness, dataset_dir: Path):
    token = qc.user()
    zip_bytes, expected = submission(dataset_dir, {"vocals": 0.1, "instrum": 0.05, "drums": 0.3})
    r = add(qc, token, zip_bytes, ensemble="1")
    assert r.status_code == 200, r.text
    body = r.json()
    entry_id = body["data"]["id"]
    assert body == {
        "success": True,
        "data": {"id": entry_id, "link": f"http://testserver/api/quality_checker/entry?id={entry_id}"},
    }

    queued = qc.client.get("/api/quality_checker/queue").json()["data"]
    assert [e["id"] for e in queued] == [entry_id] and queued[0]["proc"] == 0 and queued[0]["msg"] == ""
    assert qc.client.get("/api/quality_checker/leaderboard?dataset_type=0").json()["data"] == []

    claim = lifecycle.claim_next(qc.ctx.db, qc.worker.name, 60)
    assert claim.kind == "qc_sdr"
    qc.worker.run_claim(claim)
    entry = qc.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]
    assert entry["proc"] == 2 and entry["msg"] == "OK" and entry["status"] == "scored"
    assert entry["ensemble"] == 1 and entry["dataset_name"] == "Synthetic" and entry["algo_name"] == "Test algorithm"
    for stem, value in expected.items():
        assert entry[f"sdr_{stem}"] == pytest.approx(value, abs=1e-9)
    assert entry["sdr_bass"] is None and entry["sdr_other"] is None  # not submitted: "---" on the board
    per_track = global_sdr(
        reference(dataset_dir, songs(dataset_dir)[0], "vocals"),
        noisy(reference(dataset_dir, songs(dataset_dir)[0], "vocals"), 0.1, 0),
    )
    assert entry["tracks"][songs(dataset_dir)[0]]["vocals"]["sdr"] == pytest.approx(per_track, abs=1e-9)
    assert entry["proc_remote_date"] is not None

    qc.run_all()  # the secondary metrics, at low priority
    entry = qc.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]
    assert entry["status"] == "done"
    for stem in expected:
        assert set(entry["metrics"][stem]) == {
            "sdr",
            "si_sdr",
            "l1_freq",
            "log_wmse",
            "aura_stft",
            "aura_mrstft",
            "bleedless",
            "fullness",
            "framewise_sdr",
        }
    assert entry["sdr_vocals"] == pytest.approx(expected["vocals"], abs=1e-9)
    assert not (qc.ctx.storage.root / "qc" / f"{entry_id}.zip").exists()  # the upload goes once scored

    r = qc.client.post("/api/quality_checker/delete", data={"id": str(entry_id), "password": "wrong"})
    assert r.status_code == 400 and r.json()["success"] is False
    assert qc.client.get(f"/api/quality_checker/entry?id={entry_id}").status_code == 200
    r = qc.client.post("/api/quality_checker/delete", data={"id": str(entry_id), "password": "secret-pass"})
    assert r.json() == {"success": True, "data": {"message": "successfully deleted"}}
    assert qc.client.get(f"/api/quality_checker/entry?id={entry_id}").status_code == 404
    assert nothing_left(qc)


def test_leaderboard_sorts_by_each_sortable(sdr_only: Harness, dataset_dir: Path):
    qc = sdr_only
    token = qc.user()
    # Three entries whose order differs per stem.
    levels = {
        "A": {"vocals": 0.05, "instrum": 0.4, "drums": 0.2},
        "B": {"vocals": 0.2, "instrum": 0.05, "drums": 0.4},
        "C": {"vocals": 0.4, "instrum": 0.2, "drums": 0.05},
    }
    expected = {}
    for seed, (name, lv) in enumerate(levels.items()):
        zip_bytes, expected[name] = submission(dataset_dir, lv, seed)
        assert add(qc, token, zip_bytes, algo_name=name).status_code == 200
    vocals_only, _ = submission(dataset_dir, {"vocals": 0.01}, 9)
    assert add(qc, token, vocals_only, algo_name="vocal model").status_code == 200
    assert qc.run_all() == 4

    board = qc.client.get("/api/quality_checker/leaderboard?dataset_type=0").json()
    assert board["sortables"] == ["vocals", "instrum", "bass", "drums", "other"]
    assert board["sort"] == "vocals" and board["dataset_type"] == 0
    assert [e["algo_name"] for e in board["data"]] == ["vocal model", "A", "B", "C"]
    for stem in ("instrum", "drums"):
        board = qc.client.get(f"/api/quality_checker/leaderboard?dataset_type=0&sort={stem}").json()
        names = [e["algo_name"] for e in board["data"]]
        ranked = sorted(expected, key=lambda n: -expected[n][stem])
        assert names == ranked + ["vocal model"], stem  # entries without the stem come last
        values = [e[f"sdr_{stem}"] for e in board["data"][:3]]
        assert values == sorted(values, reverse=True)
    page = qc.client.get("/api/quality_checker/leaderboard?dataset_type=0&start=1&limit=2").json()["data"]
    assert [e["algo_name"] for e in page] == ["A", "B"] and [e["rank"] for e in page] == [2, 3]
    only = qc.client.get("/api/quality_checker/leaderboard?dataset_type=0&algo_name_filter=VOCAL").json()["data"]
    assert [e["algo_name"] for e in only] == ["vocal model"]
    bad = qc.client.get("/api/quality_checker/leaderboard?dataset_type=0&sort=guitar")
    assert bad.status_code == 400 and "vocals" in bad.json()["message"]
    assert qc.client.get("/api/quality_checker/leaderboard?dataset_type=7").status_code == 400
    assert qc.client.get("/api/quality_checker/leaderboard?dataset_type=0&limit=x").status_code == 400


def test_liberal_layouts_score_the_same(sdr_only: Harness, dataset_dir: Path):
    """One top-level folder, upper-case names, FLAC, deflate: all accepted, same numbers."""
    qc = sdr_only
    token = qc.user()
    files = {}
    for i, song in enumerate(songs(dataset_dir)):
        est = noisy(reference(dataset_dir, song, "vocals"), 0.1, i)
        files[f"My Model/{song.upper()}_VOCALS.flac"] = wav(est, fmt="FLAC")
    files["My Model/readme.txt"] = b"ignored"
    files["__MACOSX/._x"] = b"ignored"
    r = add(qc, token, make_zip(files, compression=zipfile.ZIP_DEFLATED))
    assert r.status_code == 200, r.text
    qc.run_all()
    entry = qc.client.get(f"/api/quality_checker/entry?id={r.json()['data']['id']}").json()["data"]
    assert entry["status"] == "done" and entry["metrics"]["vocals"] == {"sdr": entry["sdr_vocals"]}
    refs = [reference(dataset_dir, s, "vocals") for s in songs(dataset_dir)]
    expected = np.mean([global_sdr(ref, noisy(ref, 0.1, i)) for i, ref in enumerate(refs)])
    assert entry["sdr_vocals"] == pytest.approx(expected, abs=1e-9)


def _bad_zips(dataset_dir: Path) -> dict[str, tuple[bytes, str]]:
    """Zips refused by the add request itself, from their directory alone."""
    names = songs(dataset_dir)
    good = {f"{s}_vocals.wav": wav(reference(dataset_dir, s, "vocals")) for s in names}
    ref0 = reference(dataset_dir, names[0], "vocals")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for s in names:
            z.writestr(f"{s}_vocals.wav", wav(np.zeros((44100 * 30, 2), np.int16)))
    return {
        "not a zip": (b"PK\x03\x04 this is not really a zip", "not a valid zip"),
        "zip slip": (make_zip({**good, "../../etc/evil_vocals.wav": b"x"}), "unsafe path"),
        "absolute path": (make_zip({**good, "/tmp/x_vocals.wav": b"x"}), "unsafe path"),  # ok-path
        "nothing to score": (make_zip({"hello.txt": b"hi"}), "No files to score"),
        "missing track": (make_zip({k: v for k, v in list(good.items())[1:]}), "Missing files for stem vocals"),
        "duplicate": (make_zip({**good, f"x/{names[0]}_vocals.flac": wav(ref0, fmt="FLAC")}), "Duplicate"),
        "zip bomb": (bomb.getvalue(), "zip bomb"),
    }


def _bad_audio(dataset_dir: Path) -> dict[str, tuple[bytes, str]]:
    """Zips whose directory is fine but whose audio is not: the worker fails the entry with MVSep's message."""
    names = songs(dataset_dir)
    good = {f"{s}_vocals.wav": wav(reference(dataset_dir, s, "vocals")) for s in names}
    ref0 = reference(dataset_dir, names[0], "vocals")
    return {
        "one sample short": (
            make_zip({**good, f"{names[0]}_vocals.wav": wav(ref0[:-1])}),
            "Different shapes for wav file",
        ),
        "wrong rate": (make_zip({**good, f"{names[0]}_vocals.wav": wav(ref0, 48000)}), "Different sample rate"),
        "mono": (make_zip({**good, f"{names[0]}_vocals.wav": wav(ref0[:, :1])}), "Different number of channels"),
        "not audio": (make_zip({**good, f"{names[0]}_vocals.wav": b"RIFF garbage"}), "Can't read audio file"),
        "truncated": (
            make_zip({**good, f"{names[0]}_vocals.wav": good[f"{names[0]}_vocals.wav"][:-1000]}),
            "Different shapes for wav file",
        ),
    }


def test_bad_uploads_get_mvsep_errors_and_leave_nothing(qc: Harness, dataset_dir: Path):
    token = qc.user()
    for case, (data, message) in _bad_zips(dataset_dir).items():
        r = add(qc, token, data)
        assert r.status_code == 400, case
        body = r.json()
        assert body["success"] is False and message in body["message"], (case, body)
        assert body["errors"] == [body["message"]] and body["data"]["message"] == body["message"]
        assert nothing_left(qc), case


def test_bad_audio_fails_its_entry_with_mvsep_errors(qc: Harness, dataset_dir: Path):
    """The add request reads no audio; the worker does, and a file that does not fit fails the entry."""
    token = qc.user()
    for case, (data, message) in _bad_audio(dataset_dir).items():
        r = add(qc, token, data)
        assert r.status_code == 200, (case, r.text)
        entry_id = r.json()["data"]["id"]
        assert qc.run_all() == 1, case
        entry = qc.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]
        assert entry["status"] == "failed" and entry["proc"] == 3 and message in entry["msg"], (case, entry)
        assert qc.client.get("/api/quality_checker/leaderboard?dataset_type=0").json()["data"] == []
        assert not (qc.ctx.storage.root / "qc" / f"{entry_id}.zip").exists(), case  # dropped with the failure


class _Zeros:
    """`total` zero bytes in 1 MiB pieces, then `tail` (incompressible bytes that keep the zip's ratio honest)."""

    def __init__(self, total: int, tail: bytes = b""):
        self.total, self.tail = total, tail
        self.size = total + len(tail)
        assert self.size % 2 == 0  # RIFF chunks are word-aligned

    def __iter__(self):
        piece = bytes(1024**2)
        for _ in range(self.total // len(piece)):
            yield piece
        yield bytes(self.total % len(piece))
        yield self.tail


def padded_wav_into(z: zipfile.ZipFile, name: str, samples: np.ndarray, chunk: bytes, padding: _Zeros) -> None:
    """A valid 16-bit WAV holding a `chunk` chunk of `padding` before its samples, streamed into `z` (the padding
    is never in memory whole)."""
    pad_bytes = padding.size
    data = samples.astype("<i2").tobytes()
    channels = samples.shape[1]
    fmt = struct.pack("<HHIIHH", 1, channels, 44100, 44100 * channels * 2, channels * 2, 16)
    with z.open(name, "w") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + pad_bytes + 8 + len(data)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        f.write(chunk + struct.pack("<I", pad_bytes))
        for part in padding:
            f.write(part)
        f.write(b"data" + struct.pack("<I", len(data)) + data)


@pytest.fixture
def expanded(monkeypatch) -> list[int]:
    """Bytes decompressed out of zip members, counted where zipfile hands them out (seeks read through it too)."""
    count = [0]
    read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = read(self, n)
        count[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    return count


def padded_submission(dataset_dir: Path, path: Path, padding: _Zeros) -> Path:
    """Vocals for every track, deflated; the first track's file also holds a `JUNK` chunk of `padding`."""
    names = songs(dataset_dir)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for i, song in enumerate(names):
            est = noisy(reference(dataset_dir, song, "vocals"), 0.1, i)
            if i == 0:
                padded_wav_into(z, f"{song}_vocals.wav", est, b"JUNK", padding)
            else:
                z.writestr(f"{song}_vocals.wav", wav(est))
    return path


def test_a_padded_zip_bomb_is_refused_by_the_add_request_without_expanding_it(
    qc: Harness, dataset_dir: Path, tmp_path: Path, expanded: list[int]
):
    """300 MB of zeros in a WAV's padding chunk deflate to almost nothing; 4 MB of noise beside them keep the
    zip's compression ratio below any ratio check (the report: a 15 MB zip of 1.06 GB cost 6.6 s of API CPU)."""
    rng = np.random.default_rng(0)
    bomb = padded_submission(dataset_dir, tmp_path / "bomb.zip", _Zeros(300 * 1024**2, rng.bytes(4 * 1024**2)))
    with zipfile.ZipFile(bomb) as z:
        unpacked, packed = sum(i.file_size for i in z.infolist()), sum(i.compress_size for i in z.infolist())
    assert unpacked > 300 * 1024**2 and unpacked < 100 * packed  # not a ratio a ratio check refuses
    token = qc.user()
    started = time.perf_counter()
    r = add(qc, token, bomb.read_bytes())
    elapsed = time.perf_counter() - started
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert f"{songs(dataset_dir)[0]}_vocals.wav unpacks to" in message and "zip bomb" in message
    assert expanded[0] == 0  # the request read the zip's directory, nothing else
    assert elapsed < 2.0
    assert nothing_left(qc)


def test_a_padding_chunk_is_refused_by_the_worker_without_expanding_it(
    sdr_only: Harness, dataset_dir: Path, tmp_path: Path, expanded: list[int]
):
    """Padding small enough for the add request's size bound, but more than a file may hold beside its audio:
    the worker refuses it having read headers only, and the entry says why."""
    qc = sdr_only
    padded = padded_submission(dataset_dir, tmp_path / "padded.zip", _Zeros(2 * 1024**2))
    r = add(qc, qc.user(), padded.read_bytes())
    assert r.status_code == 200, r.text
    assert expanded[0] == 0
    entry_id = r.json()["data"]["id"]
    assert qc.run_all() == 1
    entry = qc.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]
    assert entry["status"] == "failed", entry
    assert entry["msg"] == (
        f"{songs(dataset_dir)[0]}_vocals.wav holds a 'JUNK' chunk of {2 * 1024**2} bytes before its audio; "
        f"a file may hold at most {1024**2} bytes beside its audio (headers, tags, padding)"
    )
    assert expanded[0] < 64 * 1024  # headers, not the padding nor any file's samples


@pytest.mark.parametrize(
    "container, subtype",
    [
        ("WAV", "PCM_24"),
        ("WAV", "FLOAT"),
        ("WAV", "DOUBLE"),
        ("RF64", "PCM_16"),
        ("FLAC", "PCM_24"),
        ("FLAC", "PCM_S8"),
    ],
)
def test_every_sample_format_fits_the_size_bounds(dataset_dir: Path, tmp_path: Path, container: str, subtype: str):
    """Honest files of any format a submitter writes, tags included, pass both stages' bounds."""
    from openmvsep.quality.datasets import load_dataset
    from openmvsep.quality.submission import check_upload, open_submission

    dataset = load_dataset(dataset_dir)
    path = tmp_path / "entry.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for song in songs(dataset_dir):
            buf = io.BytesIO()
            with sf.SoundFile(buf, "w", 44100, 2, subtype=subtype, format=container) as f:
                f.title, f.comment = "My model", "x" * 2000  # a tags chunk (WAV) or block (FLAC)
                f.write(reference(dataset_dir, song, "vocals"))
            z.writestr(f"{song}_vocals.{'flac' if container == 'FLAC' else 'wav'}", buf.getvalue())
    assert check_upload(path, dataset) == ("vocals",)
    assert open_submission(path, dataset).stems == ("vocals",)


def test_the_size_settings_bound_uploads(make_harness, dataset_dir: Path):
    zip_bytes, _ = submission(dataset_dir, {"vocals": 0.1})
    for setting, message in (
        ({"qc_max_unpacked_bytes": 100_000}, "The zip file unpacks to"),
        ({"qc_max_zip_members": 2}, "too many files"),
    ):
        h = make_harness(**setting)
        h.ctx.quality.register_dataset(dataset_dir)
        r = add(h, h.user(), zip_bytes)
        assert r.status_code == 400 and message in r.json()["message"], (setting, r.text)
        assert nothing_left(h)
    h = make_harness(qc_max_header_bytes=40, qc_secondary_metrics=False)  # less than a WAV's 44-byte header
    h.ctx.quality.register_dataset(dataset_dir)
    entry_id = add(h, h.user(), zip_bytes).json()["data"]["id"]
    h.run_all()
    entry = h.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]
    assert entry["status"] == "failed" and "a file may hold at most 40 bytes beside its audio" in entry["msg"]


@pytest.fixture(params=["sqlite", "postgresql"])
def qc_on_each_database(request, tmp_path, dataset_dir) -> Harness:
    with contextlib.ExitStack() as stack:
        url = {} if request.param == "sqlite" else {"database_url": stack.enter_context(postgres_database())}
        h = Harness(make_settings(tmp_path, qc_secondary_metrics=False, **url))
        stack.callback(h.ctx.db.dispose)
        stack.callback(h.close)
        h.ctx.quality.register_dataset(dataset_dir)
        yield h


def test_entry_ids_are_never_reused(qc_on_each_database: Harness, dataset_dir: Path):
    """An entry's id is its link: once the newest entry is deleted, the next one must not take its id (SQLite
    does, without AUTOINCREMENT), or the old link shows someone else's model."""
    qc = qc_on_each_database
    token = qc.user()
    zip_bytes, _ = submission(dataset_dir, {"vocals": 0.1})
    first, second = (add(qc, token, zip_bytes).json()["data"]["id"] for _ in range(2))
    r = qc.client.post("/api/quality_checker/delete", data={"id": str(second), "password": "secret-pass"})
    assert r.json()["success"] is True
    third = add(qc, token, zip_bytes, algo_name="Someone else's model").json()["data"]["id"]
    assert third not in (first, second)
    assert qc.client.get(f"/api/quality_checker/entry?id={second}").status_code == 404


def test_bad_forms(qc: Harness, dataset_dir: Path):
    token = qc.user()
    zip_bytes, _ = submission(dataset_dir, {"vocals": 0.1})
    assert add(qc, "not-a-token", zip_bytes).status_code == 401
    r = qc.client.post(
        "/api/quality_checker/add", data={"algo_name": "x"}, files={"zipfile": ("e.zip", zip_bytes, "application/zip")}
    )
    assert r.status_code == 401
    assert "algo_name" in add(qc, token, zip_bytes, algo_name=" ").json()["message"]
    assert "dataset_type" in add(qc, token, zip_bytes, dataset_type="abc").json()["message"]
    assert "Unknown dataset_type 5" in add(qc, token, zip_bytes, dataset_type="5").json()["message"]
    r = qc.client.post("/api/quality_checker/add", data={"api_token": token, "algo_name": "x"})
    assert r.status_code == 400 and "zipfile" in r.json()["message"]
    assert nothing_left(qc)
    assert qc.client.get("/api/quality_checker/entry?id=999").status_code == 404
    assert qc.client.get("/api/quality_checker/entry?id=abc").status_code == 400
    assert qc.client.post("/api/quality_checker/delete", data={"id": "999", "password": "x"}).status_code == 404


def test_upload_size_limit(make_harness, dataset_dir: Path):
    h = make_harness(qc_max_upload_bytes=10_000)
    h.ctx.quality.register_dataset(dataset_dir)
    zip_bytes, _ = submission(dataset_dir, {"vocals": 0.1})
    r = add(h, h.user(), zip_bytes)
    assert r.status_code == 413 and nothing_left(h)


def test_datasets_and_public_mixtures(qc: Harness, dataset_dir: Path):
    data = qc.client.get("/api/quality_checker/datasets").json()["data"]
    assert [(d["dataset_type"], d["name"], d["tracks"]) for d in data] == [(0, "Synthetic", TRACKS)]
    url = data[0]["mixtures"]
    r = qc.client.get(url.replace("http://testserver", ""))
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert sorted(z.namelist()) == [f"{s}_mixture.wav" for s in songs(dataset_dir)]
    # References are never served, whatever the path.
    for path in ("/storage/public/../qc/x", f"/storage/{dataset_dir}/song_000/vocals.wav"):
        assert qc.client.get(path).status_code == 404


def test_lost_scoring_goes_back_to_the_queue_and_late_results_are_ignored(qc: Harness, dataset_dir: Path):
    token = qc.user()
    zip_bytes, _ = submission(dataset_dir, {"vocals": 0.1})
    entry_id = add(qc, token, zip_bytes).json()["data"]["id"]
    claim = lifecycle.claim_next(qc.ctx.db, "dead-worker", 0.0)  # a lease that has already run out
    assert claim.kind == "qc_sdr"
    assert lifecycle.release_lost_work(qc.ctx.db, 3) == 1
    entry = qc.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]
    assert entry["status"] == "waiting" and entry["proc"] == 0
    from openmvsep.runner.quality_work import QualityWork

    QualityWork("dead-worker", qc.settings, qc.ctx.db, qc.ctx.storage, qc.ctx.quality).run(claim)  # late
    assert qc.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]["status"] == "waiting"
    qc.run_all()
    assert qc.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]["status"] == "done"


def test_metrics_without_the_log_wmse_filter(sdr_only: Harness, dataset_dir: Path, monkeypatch):
    """An install without torch-log-wmse still scores every other metric and says what is missing."""
    from openmvsep.quality import metrics

    def missing():
        raise RuntimeError("log_wmse needs the filter shipped with torch-log-wmse 0.3.1")

    monkeypatch.setattr(metrics, "log_wmse_impulse_response", missing)
    sdr_only.settings.qc_secondary_metrics = True
    zip_bytes, _ = submission(dataset_dir, {"vocals": 0.1})
    entry_id = add(sdr_only, sdr_only.user(), zip_bytes).json()["data"]["id"]
    sdr_only.run_all()
    entry = sdr_only.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]
    assert entry["status"] == "done"
    assert "log_wmse" not in entry["metrics"]["vocals"] and "aura_mrstft" in entry["metrics"]["vocals"]
    assert any(w.startswith("log_wmse was not computed: log_wmse needs") for w in entry["warnings"])


def test_janitor_drops_zips_of_entries_that_ended_without_their_worker(sdr_only: Harness, dataset_dir: Path):
    from openmvsep.runner.janitor import sweep_expired

    zip_bytes, _ = submission(dataset_dir, {"vocals": 0.1})
    entry_id = add(sdr_only, sdr_only.user(), zip_bytes).json()["data"]["id"]
    with sdr_only.ctx.db.session() as s:  # as release_lost_work leaves an entry given up on
        entry = s.get(QcEntry, entry_id)
        entry.status, entry.msg = "failed", "Scoring failed: its worker stopped 3 times"
        key = entry.zip_key
    assert sdr_only.ctx.storage.exists(key)
    sweep_expired(sdr_only.ctx.db, sdr_only.ctx.storage)
    assert not sdr_only.ctx.storage.exists(key)
    with sdr_only.ctx.db.reader() as s:
        assert s.get(QcEntry, entry_id).zip_key is None


def test_metrics_that_keep_losing_their_worker_leave_the_sdr_standing(qc: Harness, dataset_dir: Path):
    zip_bytes, expected = submission(dataset_dir, {"vocals": 0.1})
    entry_id = add(qc, qc.user(), zip_bytes).json()["data"]["id"]
    qc.worker.run_claim(lifecycle.claim_next(qc.ctx.db, qc.worker.name, 60))  # the SDR claim
    for _ in range(qc.settings.max_attempts):
        claim = lifecycle.claim_next(qc.ctx.db, "dying-worker", 0.0)
        assert claim.kind == "qc_metrics"
        lifecycle.release_lost_work(qc.ctx.db, qc.settings.max_attempts)
    entry = qc.client.get(f"/api/quality_checker/entry?id={entry_id}").json()["data"]
    assert entry["status"] == "done" and entry["msg"] == "OK"
    assert entry["sdr_vocals"] == pytest.approx(expected["vocals"], abs=1e-9)
    assert "The secondary metrics could not be computed" in entry["warnings"]
    assert lifecycle.claim_next(qc.ctx.db, "w", 60) is None
