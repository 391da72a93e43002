"""The admin pages in a real browser (Playwright driving /usr/bin/chromium) against a real `openmvsep serve`.

An admin made by `openmvsep user create --admin` logs in → opens Admin from the navigation → grants credits to a
user → the user's credits on the API (`/api/app/user`) show it; the queue panel refreshes itself (htmx polling);
an account that is not an admin gets a 403 page and no Admin link. Screenshots go to $OPENMVSEP_SCREENSHOTS.
"""

from __future__ import annotations

import pytest

from webpage import CHROMIUM, PASSWORD, log_in, screenshots, watch

from processes import Server

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
        OPENMVSEP_ADMIN_REFRESH_SECONDS="0.5",
    )
    yield s
    s.stop()


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def test_an_admin_grants_credits_the_api_shows_them_and_others_get_403(server, browser, tmp_path):
    shots = screenshots(tmp_path / "screenshots")
    server.cli("user", "create", "--email", "root@example.com", "--password", PASSWORD, "--admin")
    ann_token = server.cli("user", "create", "--email", "ann@example.com", "--password", PASSWORD).strip()
    ann_token = ann_token.splitlines()[-1]

    page = browser.new_page()
    errors = watch(page)

    log_in(page, server.url, "root@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    page.wait_for_url(server.url + "/admin/users")
    page.get_by_label("Search by e-mail or name").fill("ann")
    page.get_by_role("button", name="Search").click()
    row = page.locator('tr[data-user="ann@example.com"]')
    row.get_by_label("Credits to grant to ann@example.com (negative takes back)").fill("25")
    row.get_by_role("button", name="Grant").click()
    page.locator("[data-notice]").filter(has_text="ann@example.com now has 25 credits (+25).").wait_for()
    assert page.locator('tr[data-user="ann@example.com"] [data-credits]').inner_text() == "25"
    page.screenshot(path=str(shots / "admin-users.png"), full_page=True)
    assert server.curl(f"/api/app/user?api_token={ann_token}")["data"]["premium_minutes"] == 25

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Queue and workers").click()
    stamp = page.locator("#queue-live .muted").last
    first = stamp.inner_text()
    page.wait_for_function(  # the panel is read again without a reload (htmx polling)
        "(first) => document.querySelector('#queue-live p.muted:last-of-type').textContent !== first",
        arg=first,
        timeout=10_000,
    )
    page.screenshot(path=str(shots / "admin-queue.png"), full_page=True)

    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Models and weights").click()
    page.locator("table.admin-models tbody tr").first.wait_for()
    page.screenshot(path=str(shots / "admin-models.png"), full_page=True)
    assert not errors, errors

    other = browser.new_page()
    log_in(other, server.url, "ann@example.com")
    assert other.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").count() == 0
    response = other.goto(server.url + "/admin/users")
    assert response is not None and response.status == 403
    assert "not one" in other.locator("[data-message]").inner_text()
    other.screenshot(path=str(shots / "admin-403.png"), full_page=True)
