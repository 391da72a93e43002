"""The web page in a real browser: Playwright for Python driving Debian's Chromium (/usr/bin/chromium; `.ci/run`
installs it) against a real `openmvsep serve` with one local worker.

register → drop a generated WAV on the page → follow the live status to done (sep_type 55, the DSP phantom
centre: no weights) → the result page lists both stems with players → the zip download holds both.
Screenshots of each page go to $OPENMVSEP_SCREENSHOTS (default: the test's temporary folder), as artifacts.
"""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest

from webpage import CHROMIUM, register_in_browser, screenshots, watch

from conftest import stereo_mix, wav_bytes
from processes import Server

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (apt-get install chromium; .ci/run does it)"
)

DROP = """([name, b64]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type: "audio/wav" }));
    const zone = document.getElementById("drop-zone");
    for (const type of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
    }
}"""


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data", workers=1, OPENMVSEP_DEVICE="cpu", OPENMVSEP_RATE_LIMIT_PER_MINUTE="0")
    yield s
    s.stop()


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def test_register_drop_a_file_follow_it_live_and_download_the_stems(server, browser, tmp_path):
    shots = screenshots(tmp_path / "screenshots")
    page = browser.new_page()
    errors = watch(page)
    register_in_browser(page, server.url, shot=shots / "register.png")
    assert page.get_by_role("button", name="Log out").is_visible()

    # The picker: choose the phantom centre, whose DSP option runs without weights; the fields follow (htmx).
    page.get_by_label("Algorithm", exact=True).select_option("55")
    page.locator('#fields .algorithm[data-sep-type="55"]').wait_for()
    page.locator("#add_opt1").select_option("dsp")
    page.locator("#fields #outputs").filter(has_text="Center, Wide").wait_for()

    audio = base64.b64encode(wav_bytes(stereo_mix(3.0))).decode()
    page.evaluate(DROP, ["song.wav", audio])
    assert "song.wav" in page.locator("#file-info").inner_text()
    page.screenshot(path=str(shots / "separate.png"), full_page=True)
    page.get_by_role("button", name="Separate").click()

    page.wait_for_url(server.url + "/result/**")
    page.screenshot(path=str(shots / "status.png"), full_page=True)
    # Live status ends in the result, without the test reloading anything.
    page.locator(".stem[data-stem]").nth(1).wait_for(timeout=60_000)
    stems = page.locator(".stem[data-stem]")
    assert stems.count() == 2
    assert [stems.nth(i).get_attribute("data-stem") for i in range(2)] == ["Center", "Wide"]
    assert page.locator("audio").count() == 3  # the stems' and the input's (the mixer's rows)
    page.screenshot(path=str(shots / "result.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download all (zip)").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    names = archive.namelist()
    assert len(names) == 2 and all(n.endswith(".wav") for n in names), names
    assert archive.testzip() is None
    assert not errors, errors  # no script error, no CSP violation reported to the console
