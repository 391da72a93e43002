"""URL inputs through the remote stage, matchering's two inputs, webhooks, delete."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse

import numpy as np
import pytest
from sqlalchemy import func, select

from openmvsep.store.models import Job

from conftest import stereo_mix, wav_bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    posts: list[dict] = []

    def do_GET(self):
        body = self.files.get(urllib.parse.unquote(self.path))
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        self.posts.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.files, _Handler.posts = {}, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Handler
    server.shutdown()


def test_url_input_two_stage_flow(make_harness, web):
    base, handler = web
    handler.files["/music/Remote Song.wav"] = wav_bytes(stereo_mix(1.0))
    h = make_harness(remote_allow_private=True)
    token = h.user()
    r = h.client.post(
        "/api/separation/create",
        data={
            "api_token": token,
            "sep_type": "55",
            "add_opt1": "dsp",
            "url": f"{base}/music/Remote%20Song.wav",
            "remote_type": "direct",
            "output_format": "2",
        },
    ).json()
    short = r["data"]["hash"]
    assert len(short) == 16 and short.isalnum()
    assert r["data"]["link"] == f"http://testserver/api/separation/get-remote?hash={short}"
    waiting = h.client.get("/api/separation/get-remote", params={"hash": short}).json()
    assert waiting["status"] == "waiting" and waiting["data"]["current_order"] == 1
    # the download counts as the user's active job
    assert h.create(token, wav_bytes(stereo_mix(1.0)))["status"] == 400
    h.run_all()
    remote = h.client.get("/api/separation/get-remote", params={"hash": short}).json()
    assert remote["status"] == "done"
    long_hash = remote["data"]["hash"]
    assert long_hash.endswith("-remote-song.wav") and remote["data"]["link"].endswith(long_hash)
    done = h.get(long_hash)
    assert done["status"] == "done" and [f["type"] for f in done["data"]["files"]] == ["Center", "Wide"]
    assert done["data"]["files"][0]["url"].endswith(".flac")


def test_url_input_refused_on_loopback_by_default(harness, web):
    base, handler = web
    handler.files["/a.wav"] = wav_bytes(stereo_mix(1.0))
    token = harness.user()
    short = harness.client.post(
        "/api/separation/create", data={"api_token": token, "sep_type": "55", "url": f"{base}/a.wav"}
    ).json()["data"]["hash"]
    harness.run_all()
    got = harness.client.get("/api/separation/get-remote", params={"hash": short}).json()
    assert got["status"] == "failed" and "private" in got["data"]["message"]


def test_matchering_job_matches_loudness_and_brightness(harness):
    token = harness.user()
    rate = 44100
    t = np.arange(rate * 20) / rate
    rng = np.random.default_rng(1)
    tones = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((110, 220, 330, 440)))
    quiet_dull = np.stack([0.02 * tones, 0.02 * tones]).astype(np.float32)
    bright = tones + 0.8 * rng.standard_normal(t.size) * (1 + np.sin(2 * np.pi * 2 * t))
    loud_bright = np.stack([0.9 * bright, 0.9 * bright]) / np.abs(bright).max()
    files = {
        "target_audiofile": ("target.wav", wav_bytes(quiet_dull), "audio/wav"),
        "reference_audiofile": ("ref.wav", wav_bytes(loud_bright.astype(np.float32)), "audio/wav"),
    }
    r = harness.client.post(
        "/api/separation/create", data={"api_token": token, "sep_type": "68", "output_format": "4"}, files=files
    ).json()
    assert r["success"] is True, r
    harness.run_all()
    done = harness.get(r["data"]["hash"])
    assert done["status"] == "done", done
    import io

    import soundfile as sf

    (result,) = done["data"]["files"]
    assert result["type"] == "Result"
    audio, _ = sf.read(
        io.BytesIO(harness.client.get(result["url"].removeprefix("http://testserver")).content), always_2d=True
    )

    def rms_db(x):
        return 20 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-12)

    assert abs(rms_db(audio) - rms_db(loud_bright.T)) < 2.0
    assert rms_db(audio) - rms_db(quiet_dull.T) > 10

    def brightness(x):
        spectrum = np.abs(np.fft.rfft(x[:, 0])) ** 2
        freqs = np.fft.rfftfreq(x.shape[0], 1 / rate)
        return 10 * np.log10(spectrum[freqs > 4000].sum() / spectrum[freqs < 1000].sum())

    assert abs(brightness(audio) - brightness(loud_bright.T)) < abs(
        brightness(quiet_dull.T) - brightness(loud_bright.T)
    )


def test_matchering_needs_both_files(harness):
    token = harness.user()
    r = harness.client.post(
        "/api/separation/create",
        data={"api_token": token, "sep_type": "68"},
        files={"target_audiofile": ("t.wav", wav_bytes(stereo_mix(1.0)), "audio/wav")},
    )
    assert r.status_code == 400 and "reference_audiofile" in r.json()["message"]


def test_webhook_receives_the_get_body(make_harness, web):
    base, handler = web
    h = make_harness(remote_allow_private=True, webhook_poll_seconds=0.05)
    token = h.user()
    hash_value = h.create(token, wav_bytes(stereo_mix(1.0)), webhook_url=f"{base}/hook")["data"]["hash"]
    h.run_all()
    deadline = time.monotonic() + 10
    while not handler.posts and time.monotonic() < deadline:  # sent by the app's webhook senders, not the worker
        time.sleep(0.05)
    assert len(handler.posts) == 1
    body = handler.posts[0]
    assert body["hash"] == hash_value and body["status"] == "done" and body["data"]["files"]


def test_delete_removes_files_and_hides_job(harness):
    token = harness.user()
    hash_value = harness.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    harness.run_all()
    urls = [f["url"] for f in harness.get(hash_value)["data"]["files"]]
    r = harness.client.post("/api/separation/delete", data={"api_token": token, "hash": hash_value}).json()
    assert r["success"] is True
    assert harness.get(hash_value)["status"] == "not_found"
    for url in urls:
        assert harness.client.get(url.removeprefix("http://testserver")).status_code == 404
    with harness.ctx.db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1  # the row stays for history
