"""The result page's player and re-runs, without a browser: waveform peaks computed by the server match the
audio (checked against numpy), the mixer's controls are on the page with labels, and a stored input or output of
the caller's own job becomes a new job without an upload, under create's rules, while nobody else's can."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import threading
from datetime import datetime, timedelta

import numpy as np
import pytest
import soundfile as sf

from openmvsep.engine.audio.peaks import bucket_count, compute_peaks
from openmvsep.service.jobs.eta import queue_wait_seconds, remaining_seconds
from openmvsep.store.models import Job
from openmvsep.store.status import JobStatus
from webpage import register

from conftest import Harness, make_settings, stereo_mix, wav_bytes


@pytest.fixture
def site(tmp_path):
    h = Harness(make_settings(tmp_path, web_peaks_per_second=50.0, web_peaks_max_buckets=400), pages=True)
    yield h
    h.close()


def logout(h: Harness, csrf: str) -> None:
    h.client.post("/logout", data={"csrf_token": csrf})
    h.client.cookies.clear()


def post_job(h: Harness, csrf: str, *, audio: bytes | None = None, **fields) -> dict:
    data = {"sep_type": "55", "add_opt1": "dsp", "output_format": "1", **fields}
    sent = "from_hash" in fields or fields.pop("no_file", None)
    files = None if sent else {"audiofile": ("song.wav", audio or wav_bytes(stereo_mix(2.0)))}
    r = h.client.post(
        "/web/separate", data=data, files=files, headers={"X-CSRF-Token": csrf, "Accept": "application/json"}
    )
    return {"status": r.status_code, **r.json()}


def expected_peaks(samples: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy's answer: (frames, channels) cut into `buckets` slices, min and max over each slice's samples."""
    edges = (np.arange(buckets + 1) * samples.shape[0]) // buckets
    lo = np.array([samples[edges[i] : edges[i + 1]].min() for i in range(buckets)])
    hi = np.array([samples[edges[i] : edges[i + 1]].max() for i in range(buckets)])
    return lo, hi


# ------------------------------------------------------------------------------------------------ peaks


@pytest.mark.parametrize("frames,per_second,cap", [(44100 * 3 + 17, 100.0, 250), (30000, 1000.0, 10000), (500, 5.0, 9)])
def test_peaks_are_the_min_and_max_of_each_slice_of_the_decoded_audio(tmp_path, frames, per_second, cap):
    rng = np.random.default_rng(7)
    samples = (rng.standard_normal((frames, 2)) * 0.2).astype(np.float32)
    samples[frames // 3 : frames // 3 + 50, 1] = 0.95  # a spike in one channel only
    path = tmp_path / "a.wav"
    sf.write(path, samples, 44100, subtype="FLOAT")
    peaks = compute_peaks(path, per_second=per_second, max_buckets=cap)
    buckets = bucket_count(frames / 44100, per_second, cap)
    assert len(peaks.mins) == len(peaks.maxs) == buckets
    lo, hi = expected_peaks(samples, buckets)
    np.testing.assert_array_equal(peaks.mins, lo)
    np.testing.assert_array_equal(peaks.maxs, hi)
    assert peaks.duration == pytest.approx(frames / 44100)


def test_the_peaks_route_answers_the_stored_files_waveforms(site):
    csrf = register(site)
    mix = stereo_mix(3.0)
    hash_value = post_job(site, csrf, audio=wav_bytes(mix))["data"]["hash"]
    site.run_all()
    page = site.client.get(f"/result/{hash_value}").text
    urls = re.findall(r'data-peaks="([^"]+)"', page)
    assert len(urls) == 3  # the input and two stems
    r = site.client.get(urls[0].replace("&amp;", "&"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["duration"] == pytest.approx(3.0)
    decoded = sf.read(io.BytesIO(wav_bytes(mix)), dtype="float32")[0]  # what the 16-bit input holds
    lo, hi = expected_peaks(decoded, bucket_count(3.0, 50.0, 400))
    np.testing.assert_allclose(body["min"], lo, atol=1e-4)
    np.testing.assert_allclose(body["max"], hi, atol=1e-4)
    # Each stem's peaks are its own file's.
    for url, f in zip(urls[1:], site.get(hash_value)["data"]["files"]):
        path = "/" + f["url"].split("://", 1)[1].split("/", 1)[1]
        stem = sf.read(io.BytesIO(site.client.get(path).content), dtype="float32")[0]
        body = site.client.get(url.replace("&amp;", "&")).json()
        lo, hi = expected_peaks(stem, len(body["min"]))
        np.testing.assert_allclose(body["min"], lo, atol=1e-4)
        np.testing.assert_allclose(body["max"], hi, atol=1e-4)
    etag = r.headers["etag"]
    again = site.client.get(urls[0].replace("&amp;", "&"), headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_peaks_of_a_file_a_job_does_not_have_are_not_found(site):
    csrf = register(site)
    hash_value = post_job(site, csrf)["data"]["hash"]
    site.run_all()
    for name in ("3", "0", "-1", "Input", "1.0", "key"):
        r = site.client.get(f"/web/jobs/{hash_value}/peaks/{name}")
        assert r.status_code == 404 and r.json()["success"] is False, name
        assert r.json()["data"]["message"].startswith("This separation has no file"), name
    r = site.client.get("/web/jobs/20200101000000-aaaaaaaaaa-x.wav/peaks/input")
    assert r.status_code == 404 and r.json()["data"]["message"] == "This separation does not exist."


# ------------------------------------------------------------------------------------------------ mixer


def test_the_result_page_has_a_labelled_mixer_with_every_row(site):
    csrf = register(site)
    hash_value = post_job(site, csrf)["data"]["hash"]
    site.run_all()
    page = site.client.get(f"/result/{hash_value}").text
    assert 'data-role="input"' in page and re.findall(r'data-stem="([^"]+)"', page) == ["Center", "Wide"]
    assert 'src="/web/static/app/mixer.js?v=' in page
    assert 'id="play"' in page and '<label for="seek"' in page
    for label in ("input", "Center", "Wide"):
        assert f'aria-label="Mute {label}"' in page and f'aria-label="Solo {label}"' in page
        assert f"Volume of {label}</label>" in page
    assert page.count('aria-pressed="false"') >= 7  # play, and mute and solo of three rows
    assert page.count("<canvas") == 3
    # Without the script, the browser's own players stay.
    assert page.count("<audio controls") == 3
    assert "Re-run with another algorithm" in page and page.count("Separate this stem further") == 2


def test_another_visitor_sees_the_mixer_but_no_re_run(site):
    csrf = register(site)
    hash_value = post_job(site, csrf)["data"]["hash"]
    site.run_all()
    logout(site, csrf)
    page = site.client.get(f"/result/{hash_value}").text
    assert page.count("<canvas") == 3 and "Re-run" not in page and "?from=" not in page


# ------------------------------------------------------------------------------------------------ re-run


def stored_sha(h: Harness, hash_value: str, source: str) -> str:
    with h.ctx.db.reader() as s:
        job = s.query(Job).filter_by(hash=hash_value).one()
        key = next(iter(job.inputs.values()))["key"] if source == "input" else job.files[int(source) - 1]["key"]
    return hashlib.sha256(b"".join(h.ctx.storage.read(key))).hexdigest()


def test_the_separate_page_prefills_a_stored_file_of_ones_own_job(site):
    csrf = register(site)
    hash_value = post_job(site, csrf)["data"]["hash"]
    site.run_all()
    page = site.client.get("/", params={"from": hash_value, "source": "2"}).text
    assert f'name="from_hash" value="{hash_value}"' in page and 'name="source" value="2"' in page
    assert "Wide" in page and "nothing is uploaded again" in page
    assert re.search(r'id="audiofile"[^>]*disabled', page)


def test_a_stored_input_runs_again_with_another_algorithm_without_an_upload(site):
    csrf = register(site)
    first = post_job(site, csrf)["data"]["hash"]
    # The same limits as create: one job at a time on the free plan.
    refused = post_job(site, csrf, from_hash=first, source="input", sep_type="114")
    assert refused["status"] == 400 and "in progress" in refused["data"]["message"]
    site.run_all()
    made = post_job(site, csrf, from_hash=first, source="input", sep_type="114", add_opt1="", output_format="0")
    assert made["success"] is True, made
    second = made["data"]["hash"]
    assert second != first
    assert stored_sha(site, second, "input") == stored_sha(site, first, "input")
    assert site.get(second)["status"] == "waiting"
    with site.ctx.db.reader() as s:
        assert s.query(Job).filter_by(hash=second).one().sep_type == 114


def test_a_stem_is_sent_to_another_separation_as_its_input(site):
    csrf = register(site)
    first = post_job(site, csrf)["data"]["hash"]
    site.run_all()
    made = post_job(site, csrf, from_hash=first, source="1", output_format="2")
    assert made["success"] is True, made
    second = made["data"]["hash"]
    assert stored_sha(site, second, "input") == stored_sha(site, first, "1")
    site.run_all()
    assert site.get(second)["status"] == "done"


@pytest.mark.parametrize("source", ["3", "key", "../x", ""])
def test_a_file_the_job_does_not_have_is_refused_and_nothing_is_made(site, source):
    csrf = register(site)
    first = post_job(site, csrf)["data"]["hash"]
    site.run_all()
    r = post_job(site, csrf, from_hash=first, source=source or "nope")
    assert r["status"] == 404 and r["success"] is False
    with site.ctx.db.reader() as s:
        assert s.query(Job).count() == 1


def test_nobody_else_can_re_run_a_job_even_knowing_its_hash(site):
    csrf = register(site)
    first = post_job(site, csrf)["data"]["hash"]
    site.run_all()
    logout(site, csrf)
    other = register(site, "bob@example.com")
    r = post_job(site, other, from_hash=first, source="input")
    assert r["status"] == 404 and r["data"]["message"] == "That separation was not found among yours."
    page = site.client.get("/", params={"from": first, "source": "input"}).text
    assert "That separation was not found among yours." in page and 'name="from_hash"' not in page
    with site.ctx.db.reader() as s:
        assert s.query(Job).count() == 1


# ------------------------------------------------------------------------------------------------ links, Matchering


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    _Files.files = {"/song.wav": wav_bytes(stereo_mix(1.5))}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_link_is_downloaded_by_the_remote_stage_then_separated(tmp_path, file_server):
    h = Harness(make_settings(tmp_path, remote_allow_private=True), pages=True)
    try:
        csrf = register(h)
        page = h.client.get("/").text
        assert '<label for="url">' in page and '<option value="drive">Google Drive</option>' in page
        made = post_job(h, csrf, url=f"{file_server}/song.wav", remote_type="direct", no_file="1")
        assert made["success"] is True, made
        link = made["data"]["link"]
        assert link == f"/web/remote/{made['data']['hash']}"
        waiting = h.client.get(link)
        assert waiting.status_code == 200 and 'data-status="waiting"' in waiting.text
        assert 'src="/web/static/app/remote.js?v=' in waiting.text
        h.run_all()
        done = h.client.get(link, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"].startswith("/result/")
        result = h.client.get(done.headers["location"]).text
        assert re.findall(r'data-stem="([^"]+)"', result) == ["Center", "Wide"]
    finally:
        h.close()


def test_a_bad_link_is_refused_with_the_services_message_and_nothing_is_queued(site):
    csrf = register(site)
    r = post_job(site, csrf, url="http://example.com/a.wav", remote_type="ftp", no_file="1")
    assert r["status"] == 400 and r["data"]["message"].startswith("remote_type must be one of")
    assert site.client.get("/web/remote/nope").status_code == 404


def test_matchering_takes_a_target_and_a_reference(site):
    csrf = register(site)
    page = site.client.get("/matchering").text
    assert '<label for="target_audiofile">' in page and '<label for="reference_audiofile">' in page
    assert 'name="sep_type" value="68"' in page
    files = {
        "target_audiofile": ("target.wav", wav_bytes(stereo_mix(2.0, seed=1) * 0.3)),
        "reference_audiofile": ("reference.wav", wav_bytes(stereo_mix(2.0, seed=2))),
    }
    data = {"csrf_token": csrf, "sep_type": "68", "output_format": "1"}
    r = site.client.post("/web/separate", data=data, files=files, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/result/"), r.text
    hash_value = r.headers["location"].rsplit("/", 1)[1]
    with site.ctx.db.reader() as s:
        job = s.query(Job).filter_by(hash=hash_value).one()
        assert job.sep_type == 68 and set(job.inputs) == {"target_audiofile", "reference_audiofile"}
    one = site.client.post("/web/separate", data=data, files={"target_audiofile": files["target_audiofile"]})
    assert one.status_code == 400 and "reference_audiofile" in one.text


# ------------------------------------------------------------------------------------------------ elapsed and ETA


def test_time_left_follows_the_measured_speeds():
    waiting, processing = JobStatus.WAITING, JobStatus.PROCESSING
    assert remaining_seconds(waiting, 100.0, 0.0, None) is None  # nothing measured yet
    assert remaining_seconds(waiting, 100.0, 0.0, 0.5) == 50.0
    assert remaining_seconds(waiting, 100.0, 0.0, 0.5, all_chunks=4, workers=2) == 25.0  # chunks shared by 2
    assert queue_wait_seconds(60.0, 20.0, 2) == 40.0  # the work ahead and the running jobs' rest, by 2 workers
    assert remaining_seconds(processing, 100.0, 20.0, 0.5) == 30.0
    assert remaining_seconds(processing, 100.0, 80.0, 0.5) == 0.0  # slower than measured: never negative
    # Nothing measured yet: the progress the worker reported gives the pace (a quarter in 20 s: 60 s to go).
    assert remaining_seconds(processing, 100.0, 20.0, None, progress=0.25) == 60.0
    # In chunks with some done, the job's own pace wins: 3 chunks in 30 s, 7 to go.
    distributing = JobStatus.DISTRIBUTING
    assert remaining_seconds(distributing, 100.0, 30.0, 0.5, finished_chunks=3, all_chunks=10) == 70.0
    assert remaining_seconds(distributing, 100.0, 30.0, None, finished_chunks=0, all_chunks=10) is None


def test_the_estimate_is_the_median_real_time_factor_of_finished_jobs_of_the_algorithm(site):
    token = site.user(premium=True, credits=1000)
    for _ in range(3):
        assert site.create(token, wav_bytes(stereo_mix(1.0)))["success"]
    site.run_all()
    start = datetime(2026, 1, 1, 12, 0, 0)
    with site.ctx.db.session() as s:  # three finished jobs: 10 s of audio in 5, 10 and 40 s -> median factor 1.0
        for job, wall in zip(s.query(Job).order_by(Job.id), (5, 10, 40)):
            job.duration, job.started_at, job.finished_at = 10.0, start, start + timedelta(seconds=wall)
    waiting = site.create(token, wav_bytes(stereo_mix(2.0)))["data"]["hash"]
    eta = site.ctx.jobs.eta.estimate(waiting)
    assert eta.remaining_s == pytest.approx(2.0) and 0 <= eta.elapsed_s < 60
    # Another algorithm has no measurements: no estimate rather than a wrong one.
    assert site.ctx.jobs.eta.measured(113) == (None, None)
    fragment = site.client.get(f"/web/jobs/{waiting}/status").text
    assert "Elapsed" in fragment and "less than a minute left" in fragment and "data-since=" in fragment
    site.run_all()
    assert "Elapsed" not in site.client.get(f"/web/jobs/{waiting}/status").text  # over: no clock


def test_the_status_page_offers_a_done_notification(site):
    csrf = register(site)
    hash_value = post_job(site, csrf)["data"]["hash"]
    page = site.client.get(f"/result/{hash_value}").text
    assert re.search(r'<button type="button" id="notify"[^>]*hidden>Notify me when it ends</button>', page)


def test_an_output_that_is_not_audio_is_a_download_and_stays_out_of_the_mixer(site):
    csrf = register(site)
    hash_value = post_job(site, csrf)["data"]["hash"]
    site.run_all()
    with site.ctx.db.session() as s:  # as Basic Pitch or Whisper give: a file players cannot play
        job = s.query(Job).filter_by(hash=hash_value).one()
        job.files = [job.files[0], {**job.files[1], "download": "song_notes.mid"}]
    page = site.client.get(f"/result/{hash_value}").text
    assert page.count('class="stem track"') == 2 and page.count("<audio") == 2 and page.count("<canvas") == 2
    assert 'download="song_notes.mid"' in page and page.count("Separate this stem further") == 1
