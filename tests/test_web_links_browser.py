"""Separations that do not start from one dropped file, in a real browser (Playwright driving /usr/bin/chromium)
against a real `openmvsep serve` with one local worker:

* Matchering: a quiet target and a loud reference chosen on /matchering → the job's page follows it to done → the
  result, downloaded, is as loud as the reference;
* bad files on the Separate page (not audio by type, not audio inside, over the size limit): each gets a plain
  message on the page, and no job is made;
* a link: a WAV served by a local HTTP server (private addresses allowed by OPENMVSEP_REMOTE_ALLOW_PRIVATE) given
  on the Separate page → the download's page → the job's page by itself → done, with the link's file name and both
  stems drawn.

One server, one browser and one logged-in user serve the module. Screenshots go to $OPENMVSEP_SCREENSHOTS.
"""

from __future__ import annotations

import http.server
import io
import re
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from webpage import CHROMIUM, register_in_browser, screenshots, serious_violations, watch

from conftest import stereo_mix, wav_bytes
from processes import Server

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (apt-get install chromium; .ci/run does it)"
)
RATE = 44100
UPLOAD_LIMIT = 8 * 1024 * 1024  # bytes: Matchering's two 10 s files fit, the "oversized" one below does not


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

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

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def files():
    """A local web server with files to link to: (its base URL, path -> bytes)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    _Files.files = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Files.files
    server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(
        tmp_path_factory.mktemp("links") / "data",
        workers=1,
        OPENMVSEP_DEVICE="cpu",
        OPENMVSEP_RATE_LIMIT_PER_MINUTE="0",
        OPENMVSEP_REMOTE_ALLOW_PRIVATE="true",  # the linked file is on this machine
        OPENMVSEP_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
    )
    yield s
    s.stop()


@dataclass
class Visitor:
    page: Any  # playwright's Page, logged in
    errors: list[str]  # what went wrong on it (webpage.watch)
    shots: Path


@pytest.fixture(scope="module")
def visitor(server, tmp_path_factory):
    """One browser page, logged in as a newly registered user, for the whole module."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors = watch(page)
        register_in_browser(page, server.url)
        yield Visitor(page, errors, screenshots(tmp_path_factory.mktemp("screenshots")))
        browser.close()


def rms_db(audio: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(audio))) + 1e-12))


def test_matchering_with_two_files_reaches_done_and_sounds_like_the_reference(server, visitor):
    page, shots = visitor.page, visitor.shots
    t = np.arange(RATE * 10) / RATE
    tones = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((110, 220, 330, 440)))
    quiet = np.stack([0.02 * tones, 0.02 * tones]).astype(np.float32)
    noise = np.random.default_rng(1).standard_normal(t.size)
    bright = tones + 0.8 * noise * (1 + np.sin(2 * np.pi * 2 * t))
    loud = (np.stack([0.9 * bright, 0.9 * bright]) / np.abs(bright).max()).astype(np.float32)

    page.goto(server.url + "/matchering")
    page.get_by_label("Target: the track to master").set_input_files(
        files=[{"name": "my mix.wav", "mimeType": "audio/wav", "buffer": wav_bytes(quiet)}]
    )
    page.get_by_label("Reference: the track it should sound like").set_input_files(
        files=[{"name": "reference.wav", "mimeType": "audio/wav", "buffer": wav_bytes(loud)}]
    )
    page.screenshot(path=str(shots / "matchering-filled.png"), full_page=True)
    with page.expect_request("**/web/separate") as sent:
        page.get_by_role("button", name="Match").click()
    assert sent.value.headers.get("accept") == "application/json"  # sent by upload.js, with progress and cancel
    page.wait_for_url(server.url + "/result/**")
    page.locator("#mixer .track[data-drawn=true]").nth(1).wait_for(timeout=120_000)  # the target and the result
    assert page.locator(".stem[data-stem]").evaluate_all("(rows) => rows.map((r) => r.dataset.stem)") == ["Result"]
    assert "my mix.wav" in page.locator("main h1").inner_text()
    page.screenshot(path=str(shots / "matchering-result.png"), full_page=True)
    assert serious_violations(page) == []

    link = page.locator('.stem[data-stem="Result"] a[download]').get_attribute("href")
    result, _ = sf.read(io.BytesIO(page.request.get(server.url + link).body()), always_2d=True)
    assert abs(rms_db(result) - rms_db(loud.T)) < 2.0  # as loud as the reference
    assert rms_db(result) - rms_db(quiet.T) > 10  # far louder than the target was
    assert visitor.errors == []


def test_a_link_is_downloaded_then_separated_to_done(server, visitor, files):
    page, shots = visitor.page, visitor.shots
    base, served = files
    served["/music/Linked Song.wav"] = wav_bytes(stereo_mix(3.0))

    page.goto(server.url + "/")
    page.get_by_label("Algorithm", exact=True).select_option("55")
    page.locator('#fields .algorithm[data-sep-type="55"]').wait_for()
    page.locator("#add_opt1").select_option("dsp")
    page.locator("#link-input summary").click()
    page.get_by_label("Link to an audio file").fill(f"{base}/music/Linked%20Song.wav")
    page.get_by_label("Where the link points").select_option("direct")
    page.screenshot(path=str(shots / "link-filled.png"), full_page=True)
    page.get_by_role("button", name="Separate").click()

    page.wait_for_url(server.url + "/web/remote/**")  # the download's own page, which moves on by itself
    page.wait_for_url(server.url + "/result/**", timeout=60_000)
    page.locator("#mixer .track[data-drawn=true]").nth(2).wait_for(timeout=60_000)
    stems = page.locator(".stem[data-stem]").evaluate_all("(rows) => rows.map((r) => r.dataset.stem)")
    assert stems == ["Center", "Wide"]
    assert page.locator("main h1").inner_text() == "Linked Song.wav"
    page.screenshot(path=str(shots / "link-result.png"), full_page=True)
    assert visitor.errors == []


def made(page, server) -> list[str]:
    """The hashes on the user's History page."""
    return re.findall(r'<tr data-hash="([^"]+)"', page.request.get(server.url + "/history").text())


def test_bad_files_get_a_plain_message_on_the_page_and_make_no_job(server, visitor):
    page, shots = visitor.page, visitor.shots
    before = made(page, server)
    page.goto(server.url + "/")
    page.get_by_label("Algorithm", exact=True).select_option("55")
    page.locator('#fields .algorithm[data-sep-type="55"]').wait_for()
    page.locator("#add_opt1").select_option("dsp")
    status = page.locator("#form-status")
    chooser = page.get_by_label("Drop an audio file here, or choose one")

    # Checked in the browser before any byte is sent: the type, then the size (the limit is on the page).
    chooser.set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not audio\n" * 50}])
    assert status.inner_text() == "The file 'notes.txt' does not look like audio (text/plain)."
    page.get_by_role("button", name="Separate").click()
    assert "does not look like audio" in status.inner_text() and page.url == server.url + "/"
    assert "8.00 MB" in page.locator("#limits").inner_text()
    big = b"RIFF" + bytes(UPLOAD_LIMIT + 1024)
    chooser.set_input_files(files=[{"name": "huge.wav", "mimeType": "audio/wav", "buffer": big}])
    assert "the limit is 8.00 MB" in status.inner_text()
    page.screenshot(path=str(shots / "separate-too-large.png"), full_page=True)

    # Audio by its name and type but not inside: the server's own message, shown as it said it.
    chooser.set_input_files(files=[{"name": "fake.wav", "mimeType": "audio/wav", "buffer": b"not a wav" * 100}])
    assert status.inner_text() == ""
    with page.expect_response("**/web/separate") as answer:
        page.get_by_role("button", name="Separate").click()
    message = answer.value.json()["data"]["message"]
    assert answer.value.status == 400 and message
    status.filter(has_text=message).wait_for()
    assert page.url == server.url + "/" and status.get_attribute("class") == "error"
    page.screenshot(path=str(shots / "separate-not-audio.png"), full_page=True)

    assert made(page, server) == before  # no job was made
    visitor.errors.clear()  # the 400 above is the point
