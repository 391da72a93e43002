"""MVSep's official Python examples (ZFTurbo/MVSep-API-Examples ex1, ex2, ex3) re-enacted against this server.

Each flow sends the requests the example sends, in its order and encoding, and reads the answers the way the
example reads them (CONTRACT §3.1), including the spots where it would crash (an unbound loop variable, a
missing key). Only two things differ: `requests` is replaced by the test client with https://mvsep.com swapped
for the test server, and the examples' sleeps between polls become one step of the inline worker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from argon2 import PasswordHasher

from openmvsep.service import accounts

from conftest import stereo_mix, wav_bytes

REAL_BASE = "https://mvsep.com"
TEST_BASE = "http://testserver"
ACTIVE = ("waiting", "processing", "distributing", "merging")


class RequestsLike:
    """The slice of `requests` the examples use, answered by the app's TestClient.

    Differences from requests that matter here: httpx *replaces* a URL's query with `params` (requests merges),
    which the examples never rely on, and a bare file object gets a guessed Content-Type (requests sends none).
    """

    def __init__(self, client) -> None:
        self.client = client
        self.calls: list[tuple[str, str, int]] = []

    def request(
        self,
        method: str,
        url: str,
        params: dict | None = None,
        data: dict | None = None,
        files: dict | None = None,
        headers: dict | None = None,
        stream: bool = False,
        timeout: float | None = None,
    ):
        url = url.replace(REAL_BASE, TEST_BASE)
        assert url.startswith(TEST_BASE), f"the example would leave the server: {url}"
        r = self.client.request(method, url, params=params, data=data, files=files or None, headers=headers)
        self.calls.append((method, url.removeprefix(TEST_BASE).split("?")[0], r.status_code))
        return r

    def get(self, url: str, **kw: Any):
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any):
        return self.request("POST", url, **kw)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """Real argon2 at its lowest cost, so that making accounts does not dominate the run."""
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def requests(harness) -> RequestsLike:
    return RequestsLike(harness.client)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.T, rate


def _write_inputs(folder: Path) -> dict[str, np.ndarray]:
    """A wav and a flac (ex2/ex3 pick up wav, flac and mp3) plus a file they must skip."""
    folder.mkdir(parents=True, exist_ok=True)
    mixes = {}
    for i, (name, fmt) in enumerate((("first song.wav", "WAV"), ("second.flac", "FLAC"))):
        mix = stereo_mix(1.0, seed=i)
        (folder / name).write_bytes(wav_bytes(mix, fmt=fmt))
        mixes[name] = mix
    (folder / "notes.txt").write_text("not audio")
    return mixes


# ================================================================================================ ex1 / ex2


def ex1_get_separation_types(requests: RequestsLike) -> list[str]:
    """ex1/ex2 `get_separation_types`: loop over algorithms, fields and descriptions, print one line each.

    Like the original, the field variables are read after their loop, so they come from the last algorithm that
    had fields; on a list whose *first* algorithm has none this raises UnboundLocalError.
    """
    lines = []
    response = requests.get(f"{REAL_BASE}/api/app/algorithms")
    assert response.status_code == 200
    for algorithm in response.json():
        render_id, name = algorithm["render_id"], algorithm["name"]
        group = algorithm["algorithm_group_id"]
        for field in algorithm["algorithm_fields"]:
            field_name, field_text, field_options = field["name"], field["text"], field["options"]
        for description in algorithm["algorithm_descriptions"]:
            short_desc, lang = description["short_description"], description["lang"]  # noqa: F841
        lines.append(f"{render_id}: {name}, Group ID: {group}")
        lines.append(f"\tField Name: {field_name}, Field Text: {field_text}, Options: {field_options}")
    return lines


def ex1_create_separation(
    requests: RequestsLike, path: Path, token: str, sep_type: str, add_opt1: str = "", add_opt2: str = ""
) -> tuple[str, int]:
    """ex1/ex2: every field a `(None, value)` multipart part, the file as an open handle, wav 16-bit output."""
    with open(path, "rb") as audiofile:
        files = {
            "audiofile": audiofile,
            "api_token": (None, token),
            "sep_type": (None, sep_type),
            "add_opt1": (None, add_opt1),
            "add_opt2": (None, add_opt2),
            "output_format": (None, "1"),
            "is_demo": (None, "0"),
        }
        response = requests.post(f"{REAL_BASE}/api/separation/create", files=files)
    parsed = json.loads(response.content.decode("utf-8"))
    return parsed["data"]["hash"], response.status_code


def ex1_download_file(requests: RequestsLike, url: str, filename: str, save_path: Path) -> bool:
    response = requests.get(url)
    if response.status_code != 200:
        return False
    with open(os.path.join(save_path, filename), "wb") as f:
        f.write(response.content)
    return True


def ex2_get_result(requests: RequestsLike, hash_value: str, save_path: Path) -> bool | None:
    """ex2 `get_result`: None while `data.files` is missing; with `files: []` the unbound `status` would crash."""
    response = requests.get(f"{REAL_BASE}/api/separation/get", params={"hash": hash_value})
    data = json.loads(response.content.decode("utf-8"))
    if not data["success"]:
        return False
    try:
        files = data["data"]["files"]
    except KeyError:
        return None  # "The separation is not ready yet"
    os.makedirs(save_path, exist_ok=True)
    for file_info in files:
        url = file_info["url"].replace("\\/", "/")
        status = ex1_download_file(requests, url, file_info["download"], save_path)
    return bool(status)


def test_ex1_get_types_reads_every_algorithm(requests):
    lines = ex1_get_separation_types(requests)
    assert len(lines) == 2 * 117
    assert lines[0].startswith("26: Ensemble")  # the real first element, which has fields
    assert any(line.startswith("55: Phantom Centre extraction") for line in lines)


def test_ex1_create_poll_and_download(harness, requests, tmp_path):
    token = harness.user()
    mix = stereo_mix(1.0, seed=3)
    source = tmp_path / "My Track.wav"
    source.write_bytes(wav_bytes(mix))
    out = tmp_path / "out"

    hash_value, code = ex1_create_separation(requests, source, token, "55")
    assert code == 200 and hash_value.endswith("-my-track.wav")
    assert ex2_get_result(requests, hash_value, out) is None  # waiting: no `files` key yet
    harness.run_all()
    assert ex2_get_result(requests, hash_value, out) is True

    downloaded = sorted(p.name for p in out.iterdir())
    assert len(downloaded) == 2 and all(name.endswith(("_center.wav", "_wide.wav")) for name in downloaded)
    stems = {}
    for name in downloaded:
        assert sf.info(out / name).subtype == "PCM_16"  # output_format 1: wav 16 bit
        audio, rate = _decode(out / name)
        assert rate == 44100 and audio.shape == mix.shape
        stems[name.rsplit("_", 1)[1]] = audio
    np.testing.assert_allclose(stems["center.wav"] + stems["wide.wav"], mix, atol=2e-3)


def test_ex2_processes_a_folder_one_file_at_a_time(harness, requests, tmp_path):
    """ex2 `main`: for each wav/flac/mp3 create, then `wait_to_response` (poll every 10 s, up to 360 times)."""
    token = harness.user()
    mixes = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    inputs = sorted(p for p in (tmp_path / "in").iterdir() if p.suffix in (".wav", ".flac", ".mp3"))
    for path in inputs:
        hash_value, code = ex1_create_separation(requests, path, token, "55", add_opt1="", add_opt2="")
        assert code == 200
        for polls in range(360):  # noqa: B007 - counted after the loop
            if ex2_get_result(requests, hash_value, out):
                break
            harness.worker.run_next()  # in place of time.sleep(10)
        assert polls <= 2, "the job should finish after one piece of work"
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 * len(mixes)
    assert {n.split("_")[0] for n in names} == {"first-song", "second"}


# ================================================================================================ ex3


class MVSEPClient:
    """ex3 `mvsep_client.py` (MVSEPClient): base_url attribute, form `data=`, retry rules, polling by status."""

    def __init__(self, requests: RequestsLike, api_key: str, worker_step) -> None:
        self.requests = requests
        self.api_key = api_key
        self.base_url = "https://mvsep.com/api"
        self.headers = {"User-Agent": "MVSEP Python Client/0.1"}
        self.worker_step = worker_step  # replaces time.sleep(self.retry_interval) while polling

    def _make_request(
        self,
        method: str,
        endpoint: str,
        params: dict | None = None,
        data: dict | None = None,
        files: dict | None = None,
    ):
        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        response = self.requests.request(
            method, url, params=params, data=data, files=files, headers=self.headers, timeout=30
        )
        # ex3 sleeps and retries on 429, on every 400 and on 5xx (30 times, 20 s apart): here that is a failure.
        assert response.status_code not in (400, 429) and response.status_code < 500, (
            f"ex3 would retry {method} {endpoint}: {response.status_code} {response.text}"
        )
        assert response.status_code < 400, f"ex3 raises on {response.status_code}"
        return response

    def create_separation(
        self,
        file_path: Path,
        sep_type: int,
        add_opt1: str = "",
        add_opt2: str = "",
        add_opt3: str = "",
        output_format: int = 0,
        is_demo: bool = False,
    ) -> dict:
        data = {
            "api_token": self.api_key,
            "sep_type": str(sep_type),
            "output_format": str(output_format),
            "is_demo": "1" if is_demo else "0",
        }
        for opt, val in (("add_opt1", add_opt1), ("add_opt2", add_opt2), ("add_opt3", add_opt3)):
            if val is not None:
                data[opt] = str(val)
        with open(file_path, "rb") as audiofile:
            return self._make_request("POST", "separation/create", data=data, files={"audiofile": audiofile}).json()

    def get_separation_status(self, task_hash: str, mirror: int = 0) -> dict:
        params = {"hash": task_hash, "mirror": str(mirror)}
        return self._make_request("GET", "separation/get", params=params).json()

    def download_track(self, url: str, output_path: Path) -> None:
        response = self.requests.get(url, stream=True, headers=self.headers)  # the full URL, not base_url
        assert response.status_code == 200
        os.makedirs(os.path.dirname(output_path), exist_ok=True)
        output_path.write_bytes(response.content)

    def process_directory(self, input_dir: Path, output_dir: Path, **kwargs: Any) -> list[str]:
        done_hashes = []
        for filename in sorted(os.listdir(input_dir)):
            if os.path.splitext(filename)[1].lower() not in (".mp3", ".wav", ".flac"):
                continue
            create_resp = self.create_separation(input_dir / filename, **kwargs)
            if not create_resp.get("success"):
                continue
            task_hash = create_resp["data"]["hash"]
            while True:
                status_resp = self.get_separation_status(task_hash)
                status = status_resp.get("status")
                if status in ("done", "failed", "error"):
                    break
                assert status in ACTIVE, f"ex3 skips the file on an unknown status: {status}"
                self.worker_step()
            if status != "done":
                continue
            for file_info in status_resp["data"]["files"]:
                self.download_track(file_info["url"], output_dir / file_info.get("download", "unknown.mp3"))
            done_hashes.append(task_hash)
        return done_hashes

    def get_algorithms(self) -> dict[int, str]:
        """Sorted by render_id, indexed by it; options decoded with json.loads and listed sorted."""
        sorted_algos = sorted(self._make_request("GET", "app/algorithms").json(), key=lambda a: a["render_id"])
        algo_dict = {}
        for algo in sorted_algos:
            algo_dict[algo["render_id"]] = f"\nID:{algo['render_id']} - {algo['name']}\n"
            for field in algo["algorithm_fields"]:
                algo_dict[algo["render_id"]] += f"\t{field['name']}\n"
                for key, value in sorted(json.loads(field["options"]).items()):
                    algo_dict[algo["render_id"]] += f"\t\t{key}: {value}\n"
        return algo_dict

    def _toggle(self, route: str) -> dict:
        return self._make_request("POST", f"app/{route}", data={"api_token": self.api_key}).json()

    def enable_premium(self) -> dict:
        return self._toggle("enable_premium")

    def disable_premium(self) -> dict:
        return self._toggle("disable_premium")

    def enable_long_filenames(self) -> dict:
        return self._toggle("enable_long_filenames")

    def disable_long_filenames(self) -> dict:
        return self._toggle("disable_long_filenames")

    def get_queue_info(self) -> dict:
        return self._make_request("GET", "app/queue").json()

    def get_news(self, lang: str = "en", start: int = 0, limit: int = 10) -> list:
        return self._make_request("GET", "app/news", params={"lang": lang, "start": start, "limit": limit}).json()

    def get_separation_history(self, start: int = 0, limit: int = 10) -> dict:
        params = {"api_token": self.api_key, "start": start, "limit": limit}
        return self._make_request("GET", "app/separation_history", params=params).json()

    def cancel_separation(self, task_hash: str) -> dict:
        """Not in ex3: the same form post as ALCLI's and VOX's cancel."""
        data = {"api_token": self.api_key, "hash": task_hash}
        return self._make_request("POST", "separation/cancel", data=data).json()


@pytest.fixture
def ex3(harness, requests) -> MVSEPClient:
    client = MVSEPClient(requests, harness.user(credits=10), harness.worker.run_next)
    client.base_url = f"{TEST_BASE}/api"  # the one-line base URL override ex3 allows
    return client


def test_ex3_separate_command(harness, ex3, tmp_path):
    """`mvsep_client.py separate`: print the chosen algorithm from get_algorithms, then process a folder."""
    algos = ex3.get_algorithms()
    assert list(algos) == sorted(algos) and len(algos) == 117
    assert "\t\tdsp: Phantom Centre (DSP, no download)" in algos[55]  # KeyError here if 55 were missing
    _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    hashes = ex3.process_directory(
        tmp_path / "in", out, output_format=1, sep_type=55, add_opt1="", add_opt2="", add_opt3=""
    )
    assert len(hashes) == 2
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 4 and all(n.endswith(("_center.wav", "_wide.wav")) for n in names)
    # ALCLI names a download after the text following the last "_" of the URL: the stem.
    for hash_value in hashes:
        for f in ex3.get_separation_status(hash_value)["data"]["files"]:
            assert f["url"].rsplit("/", 1)[1].rsplit("_", 1)[1] == f"{f['type'].lower()}.wav"


def test_ex3_account_calls(harness, ex3, tmp_path):
    harness.ctx.news.add("January updates", "<ol><li>Faster</li></ol>", "en")
    _write_inputs(tmp_path / "in")
    (tmp_path / "in" / "second.flac").unlink()

    def credits() -> int:
        r = harness.client.get("/api/app/user", params={"api_token": ex3.api_key})
        return r.json()["data"]["premium_minutes"]

    assert ex3.enable_premium() == {"success": True, "message": "successfully enabled"}
    assert ex3.enable_long_filenames() == {"success": True, "message": "successfully enabled"}
    long_hashes = ex3.process_directory(tmp_path / "in", tmp_path / "long", output_format=1, sep_type=55)
    assert credits() == 9  # premium on: the job was paid for
    assert ex3.disable_premium() == {"success": True, "message": "successfully disabled"}
    assert ex3.disable_long_filenames() == {"success": True, "message": "successfully disabled"}
    short_hashes = ex3.process_directory(tmp_path / "in", tmp_path / "short", output_format=1, sep_type=55)
    assert credits() == 9  # premium off: free
    long_names = sorted(p.name for p in (tmp_path / "long").iterdir())
    short_names = sorted(p.name for p in (tmp_path / "short").iterdir())
    assert long_names != short_names
    assert [n.rsplit("_", 1)[1] for n in long_names] == [n.rsplit("_", 1)[1] for n in short_names]

    queue = ex3.get_queue_info()
    assert isinstance(queue["queue"], dict)
    news = ex3.get_news(lang="en", start=0, limit=10)
    assert [n["title"] for n in news] == ["January updates"]
    history = ex3.get_separation_history(start=0, limit=10)
    assert history["success"] is True
    assert [item["hash"] for item in history["data"]] == short_hashes + long_hashes  # newest first

    # Another format: a new separation that waits for a worker (the same one again would be done at once, reused).
    created = ex3.create_separation(tmp_path / "in" / "first song.wav", sep_type=55, output_format=0)
    assert created["success"] is True
    assert ex3.cancel_separation(created["data"]["hash"])["success"] is True
    assert ex3.get_separation_status(created["data"]["hash"])["status"] == "failed"
    assert all(code < 400 for _, _, code in ex3.requests.calls)
