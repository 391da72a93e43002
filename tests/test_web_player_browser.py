"""The result page's player in a real browser (Playwright driving /usr/bin/chromium against `openmvsep serve`):
upload a generated WAV (sep_type 55, DSP) → done → every row's waveform is drawn from the server's peaks → the
rows play together, and mute / solo / volume change what each <audio> plays → re-run the stored input with
another option, without uploading it again. axe-core (test-only copy in tests/fixtures/vendor, injected through
the DevTools protocol, never served) finds no serious or critical violation on the pages touched, and the result
page fits a 360 px wide phone screen. Screenshots go to $OPENMVSEP_SCREENSHOTS (default: the test's folder).
"""

from __future__ import annotations

import base64

import pytest

from webpage import CHROMIUM, register_in_browser, screenshots, serious_violations, watch

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
    document.getElementById("drop-zone").dispatchEvent(
        new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}"""

# Pixels of a canvas that are not transparent: a drawn waveform has many.
INKED = """(canvas) => {
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
    return n;
}"""

MIX_STATE = """() => Array.from(document.querySelectorAll("#mixer .track")).map((row) => {
    const a = row.querySelector("audio");
    return { muted: a.muted, volume: a.volume, paused: a.paused, t: a.currentTime };
})"""


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data", workers=1, OPENMVSEP_DEVICE="cpu", OPENMVSEP_RATE_LIMIT_PER_MINUTE="0")
    yield s
    s.stop()


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        args = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield b
        b.close()


def upload(page, server) -> None:
    page.goto(server.url + "/")
    page.get_by_label("Algorithm", exact=True).select_option("55")
    page.locator('#fields .algorithm[data-sep-type="55"]').wait_for()
    page.locator("#add_opt1").select_option("dsp")
    page.evaluate(DROP, ["song.wav", base64.b64encode(wav_bytes(stereo_mix(4.0))).decode()])
    page.get_by_role("button", name="Separate").click()
    page.wait_for_url(server.url + "/result/**")


def wait_drawn(page) -> None:
    page.locator("#mixer .track").nth(2).wait_for(timeout=60_000)
    page.locator("#mixer .track[data-drawn=true]").nth(2).wait_for()


def test_waveforms_mixer_and_re_run_in_a_real_browser(server, browser, tmp_path):
    shots = screenshots(tmp_path / "screenshots")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors = watch(page)
    register_in_browser(page, server.url)

    page.goto(server.url + "/matchering")
    assert serious_violations(page) == []
    page.goto(server.url + "/")
    page.locator("#link-input summary").click()
    assert page.get_by_label("Link to an audio file").is_visible()
    assert serious_violations(page) == []

    upload(page, server)
    wait_drawn(page)
    first = page.url
    for canvas in page.locator("#mixer canvas").all():
        assert canvas.evaluate(INKED) > 500  # drawn, not blank
    page.screenshot(path=str(shots / "player.png"), full_page=True)
    assert serious_violations(page) == []

    # The original starts muted; the stems play.
    assert [s["muted"] for s in page.evaluate(MIX_STATE)] == [True, False, False]
    page.get_by_role("button", name="Solo Center").click()
    assert [s["muted"] for s in page.evaluate(MIX_STATE)] == [True, False, True]
    assert page.get_by_role("button", name="Solo Center").get_attribute("aria-pressed") == "true"
    page.get_by_role("button", name="Mute Center").click()
    assert [s["muted"] for s in page.evaluate(MIX_STATE)] == [True, True, True]
    page.get_by_role("button", name="Solo Center").click()  # solo off: Wide is heard again, Center stays muted
    assert [s["muted"] for s in page.evaluate(MIX_STATE)] == [True, True, False]
    page.get_by_label("Volume of Wide").fill("40")
    assert page.evaluate(MIX_STATE)[2]["volume"] == pytest.approx(0.4)
    # Keys: 2 mutes/unmutes row 2, shift+1 solos the original.
    page.locator("main h1").click()
    page.keyboard.press("2")
    page.keyboard.press("Shift+1")
    assert [s["muted"] for s in page.evaluate(MIX_STATE)] == [True, True, True]  # the original is soloed but muted
    page.keyboard.press("Shift+1")
    page.keyboard.press("1")
    assert [s["muted"] for s in page.evaluate(MIX_STATE)] == [False, False, False]

    # Play: every row runs, in step; space pauses them all.
    page.get_by_role("button", name="Play").click()
    page.wait_for_timeout(1200)
    state = page.evaluate(MIX_STATE)
    assert not any(s["paused"] for s in state), state
    assert max(s["t"] for s in state) - min(s["t"] for s in state) < 0.25, state
    assert state[0]["t"] > 0.3
    page.locator("main h1").click()
    page.keyboard.press("Space")
    assert all(s["paused"] for s in page.evaluate(MIX_STATE))

    # A 360 px phone: nothing wider than the screen, the transport reachable.
    phone = browser.new_page(viewport={"width": 360, "height": 740}, storage_state=page.context.storage_state())
    phone.goto(first)
    phone.locator("#mixer .track[data-drawn=true]").nth(2).wait_for()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    assert phone.get_by_role("button", name="Play").is_visible()
    phone.screenshot(path=str(shots / "player-360.png"), full_page=True)
    assert serious_violations(phone) == []
    phone.close()

    # Re-run the stored input with another option (FLAC out), nothing uploaded again.
    page.get_by_role("link", name="Re-run with another algorithm").click()
    page.wait_for_url(server.url + "/?from=**")
    assert page.locator("#stored-input").is_visible() and "song.wav" in page.locator("#stored-input").inner_text()
    assert serious_violations(page) == []
    page.get_by_label("Algorithm", exact=True).select_option("55")
    page.locator('#fields .algorithm[data-sep-type="55"]').wait_for()
    page.locator("#add_opt1").select_option("dsp")
    page.get_by_label("Format of the stems").select_option("2")  # flac (16 bit)
    page.screenshot(path=str(shots / "re-run.png"), full_page=True)
    page.get_by_role("button", name="Separate").click()
    page.wait_for_url(lambda url: "/result/" in url and url != first)
    wait_drawn(page)
    assert all(
        a.endswith(".flac")
        for a in page.locator("#mixer .track[data-stem] a[download]").evaluate_all(
            "(links) => links.map((a) => a.getAttribute('download'))"
        )
    )
    assert not errors, errors
