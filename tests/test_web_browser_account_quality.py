"""The Quality Checker and Account pages in a real browser (Playwright driving /usr/bin/chromium) against a real
`openmvsep serve` with one local worker and its small synthetic dataset.

register → submit two generated zips on the Quality Checker form (upload progress, then the entry page, which
reloads until scored) → the leaderboard sorted by each stem's column in turn → the entry page with its per-track plot →
regenerate the API token on the Account page, after which the old token gets the API's error on `/api/app/user`.
Screenshots of each page go to $OPENMVSEP_SCREENSHOTS (default: the test's temporary folder).
"""

from __future__ import annotations

import re

import pytest

from webpage import CHROMIUM, qc_submission, register_in_browser, screenshots, watch

from processes import Server

STEMS = ("vocals", "instrum", "bass", "drums", "other")  # the synthetic dataset's, in the leaderboard's order
VOCAL_MODEL_WINS = {"vocals", "bass", "other"}  # the other entry is the better one on instrum and drums
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (apt-get install chromium; .ci/run does it)"
)


@pytest.fixture
def server(tmp_path):
    s = Server(
        tmp_path / "data",
        workers=1,
        OPENMVSEP_DEVICE="cpu",
        OPENMVSEP_RATE_LIMIT_PER_MINUTE="0",
        OPENMVSEP_QC_DEFAULT_DATASET_TRACKS="2",
        OPENMVSEP_QC_DEFAULT_DATASET_SECONDS="2",
        OPENMVSEP_QC_SECONDARY_METRICS="false",
    )
    s.dataset = tmp_path / "data" / "qc" / "synthetic"  # type: ignore[attr-defined]
    yield s
    s.stop()


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def test_quality_checker_submit_leaderboard_entry_plot_and_token_regeneration(server, browser, tmp_path):
    shots = screenshots(tmp_path / "screenshots")
    page = browser.new_page()
    errors = watch(page)
    register_in_browser(page, server.url)

    page.goto(server.url + "/quality_checker/")
    assert page.locator("table.datasets tbody tr").count() == 1
    page.screenshot(path=str(shots / "quality_checker.png"), full_page=True)

    ids = []
    for name, levels in (
        ("Vocal model", {stem: 0.05 if stem in VOCAL_MODEL_WINS else 0.6 for stem in STEMS}),
        ("Drum model", {stem: 0.6 if stem in VOCAL_MODEL_WINS else 0.05 for stem in STEMS}),
    ):
        page.goto(server.url + "/quality_checker/add")
        page.get_by_label("Algorithm name").fill(name)
        page.get_by_label("Password (needed to delete the entry later)").fill("delete-me")
        page.set_input_files(
            "#zipfile",
            files=[
                {"name": "entry.zip", "mimeType": "application/zip", "buffer": qc_submission(server.dataset, levels)}
            ],
        )
        if not ids:
            page.screenshot(path=str(shots / "qc_submit.png"), full_page=True)
        page.get_by_role("button", name="Submit").click()
        page.wait_for_url(re.compile(r".*/quality_checker/entry/\d+$"))
        ids.append(int(page.url.rsplit("/", 1)[1]))
        page.locator("#entry-state", has_text=re.compile(r"^scored")).wait_for(
            timeout=180_000
        )  # the page reloads until scored

    page.goto(server.url + "/quality_checker/leaderboard/synthetic/")
    assert page.locator("#leaderboard thead a[data-sort]").evaluate_all(
        "(links) => links.map((a) => a.dataset.sort)"
    ) == list(STEMS)
    rows = page.locator("#leaderboard tbody tr")
    for stem in reversed(STEMS):  # every stem's column, each ranking its own best first
        page.locator(f"#leaderboard thead a[data-sort={stem}]").click()
        page.wait_for_url(re.compile(rf".*sort={stem}\b.*"))
        best, other = (ids[0], ids[1]) if stem in VOCAL_MODEL_WINS else (ids[1], ids[0])
        assert [int(rows.nth(i).get_attribute("data-entry")) for i in range(2)] == [best, other], stem
        assert page.locator("#leaderboard thead th[aria-sort=descending]").inner_text() == stem
        page.screenshot(path=str(shots / f"qc_leaderboard_{stem}.png"), full_page=True)

    page.get_by_role("link", name="Vocal model").click()
    page.wait_for_url(server.url + f"/quality_checker/entry/{ids[0]}")
    plot = page.locator("svg#qc-plot")
    assert plot.is_visible() and plot.locator("polyline").count() == len(STEMS)  # one line per stem
    assert plot.bounding_box()["width"] > 300
    page.screenshot(path=str(shots / "qc_entry.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})  # a phone: the page itself never scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=str(shots / "qc_entry_360.png"), full_page=True)
    page.goto(server.url + "/quality_checker/leaderboard/synthetic/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=str(shots / "qc_leaderboard_360.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 720})

    page.goto(server.url + "/account")
    page.get_by_role("button", name="Show").click()
    token_field = page.get_by_label("Your token")
    page.wait_for_function("document.getElementById('api-token').dataset.shown === 'yes'")
    old = token_field.input_value()
    assert "•" not in old and len(old) > 20
    page.get_by_role("button", name="Regenerate token…").click()
    page.screenshot(path=str(shots / "account_confirm.png"), full_page=True)
    page.get_by_role("button", name="Yes, make a new token").click()
    page.locator("#account-notice").wait_for()
    page.get_by_role("button", name="Show").click()
    page.wait_for_function("document.getElementById('api-token').dataset.shown === 'yes'")
    new = token_field.input_value()
    assert new != old and "•" not in new
    page.screenshot(path=str(shots / "account.png"), full_page=True)

    errors.clear()  # the refusal below is the point, not a page error
    refused = page.request.get(server.url + "/api/app/user", params={"api_token": old})
    assert refused.status == 400 and refused.json()["data"]["message"] == "Invalid API key"
    assert page.request.get(server.url + "/api/app/user", params={"api_token": new}).json()["data"]["email"] == (
        "ann@example.com"
    )
    page.goto(server.url + "/api")
    assert f"api_token={new}" in page.locator("#curl-create").inner_text()
    page.screenshot(path=str(shots / "api.png"), full_page=True)
    for path, name in (("/history", "history"), ("/news", "news"), ("/demo", "demo")):
        page.goto(server.url + path)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert not errors, errors  # no script error, no CSP violation reported to the console
