"""Every page of the site in a real browser (Playwright driving /usr/bin/chromium against `openmvsep serve`), as
an anonymous visitor, a registered user and an admin: each loads with no script error, CSP violation or failed
request, axe-core finds no serious or critical accessibility violation on it, and a screenshot of it is written to
$OPENMVSEP_SCREENSHOTS (default: the module's temporary folder) as `page-<name>.png`.

One server and one browser serve the whole module. The server runs no worker of its own: this test process runs
the work (a separation, a Quality Checker entry) on the server's database when it wants it done, so that a second
separation and a link's download stay waiting, which is what the status pages show, for as long as the test looks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from openmvsep.bootstrap import Services
from openmvsep.runner.executor import NoExecutor
from openmvsep.settings import Settings
from webpage import CHROMIUM, PASSWORD, log_in, qc_submission, screenshots, serious_violations, watch

from conftest import stereo_mix, wav_bytes
from processes import Server

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium is not installed (apt-get install chromium; .ci/run does it)"
)

QC_SETTINGS = {"qc_default_dataset_tracks": 2, "qc_default_dataset_seconds": 2.0, "qc_secondary_metrics": False}


@dataclass
class Site:
    server: Server
    shots: Path
    ids: dict[str, str]  # what the seeded pages' addresses need: hashes, entry and news ids
    contexts: dict = field(default_factory=dict)  # who -> a browser context logged in as them


def _run_all(worker) -> None:
    while worker.run_next():
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    env = {f"OPENMVSEP_{k.upper()}": str(v) for k, v in QC_SETTINGS.items()}
    server = Server(
        root / "data",
        workers=0,
        OPENMVSEP_DEVICE="cpu",
        OPENMVSEP_RATE_LIMIT_PER_MINUTE="0",
        OPENMVSEP_FREE_CONCURRENT_JOBS="0",  # the waiting separation and the waiting download beside the done one
        **env,
    )
    services = Services(Settings(data_dir=root / "data", workers=0, device="cpu", **QC_SETTINGS), executor=NoExecutor())
    try:
        server.cli("user", "create", "--email", "root@example.com", "--password", PASSWORD, "--name", "Root", "--admin")
        token = server.cli("user", "create", "--email", "ann@example.com", "--password", PASSWORD, "--name", "Ann")
        token = token.strip().splitlines()[-1]
        server.cli("news", "add", "--title", "Phantom centre", "--text", "<p>The <b>DSP</b> mode needs no weights.</p>")
        worker = services.worker("test-worker")
        api = httpx.Client(base_url=server.url, timeout=60)
        song = wav_bytes(stereo_mix(3.0))
        fields = {"api_token": token, "sep_type": "55", "add_opt1": "dsp", "output_format": "1"}
        done = api.post(
            "/api/separation/create", data={**fields, "is_demo": "1"}, files={"audiofile": ("song.wav", song)}
        ).json()["data"]["hash"]
        dataset = root / "data" / "qc" / "synthetic"
        entry = api.post(
            "/api/quality_checker/add",
            data={
                "api_token": token,
                "algo_name": "Noisy copy",
                "main_text": "References plus noise",
                "dataset_type": "0",
            },
            files={"zipfile": ("entry.zip", qc_submission(dataset, {"vocals": 0.1, "drums": 0.3}), "application/zip")},
        ).json()["data"]["id"]
        _run_all(worker)
        assert api.get("/api/separation/get", params={"hash": done}).json()["status"] == "done"
        waiting = api.post(
            # another take: the same input again would be a reused result, done at once
            "/api/separation/create",
            data=fields,
            files={"audiofile": ("second take.wav", wav_bytes(stereo_mix(3.0, seed=1)))},
        ).json()["data"]["hash"]
        remote = api.post(
            "/api/separation/create", data={**fields, "url": "http://127.0.0.1:9/song.wav", "remote_type": "direct"}
        ).json()["data"]["hash"]
        news_id = api.get("/api/app/news").json()[0]["id"]  # MVSep answers news with a bare list
        api.close()
        ids = {"done": done, "waiting": waiting, "remote": remote, "entry": str(entry), "news": str(news_id)}
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            built = Site(server, screenshots(root / "screenshots"), ids)
            built.contexts["anonymous"] = browser.new_context(viewport={"width": 1280, "height": 900})
            for who, email in (("ann", "ann@example.com"), ("admin", "root@example.com")):
                built.contexts[who] = browser.new_context(viewport={"width": 1280, "height": 900})
                page = built.contexts[who].new_page()
                log_in(page, server.url, email)
                page.close()
            yield built
            browser.close()
    finally:
        services.close()
        server.stop()


@dataclass(frozen=True)
class PageCase:
    name: str  # the screenshot's name
    who: str  # anonymous | ann | admin
    path: str  # with {done}, {waiting}, {remote}, {entry}, {news} filled from Site.ids
    ready: str = "main h1"  # what is on the page once it has loaded what it loads
    status: int = 200


PAGES = [
    PageCase("separate", "anonymous", "/", ready="#fields .algorithm"),
    PageCase("separate-logged-in", "ann", "/", ready="#fields .algorithm"),
    PageCase("separate-re-run", "ann", "/?from={done}&source=1", ready="#stored-input"),
    PageCase("matchering", "ann", "/matchering"),
    PageCase("algorithms", "anonymous", "/algorithms"),
    PageCase("demo", "anonymous", "/demo", ready=".demo audio"),
    PageCase("news", "anonymous", "/news"),
    PageCase("news-item", "anonymous", "/news/{news}"),
    PageCase("quality-checker", "anonymous", "/quality_checker/", ready="table.datasets"),
    PageCase(
        "qc-leaderboard", "anonymous", "/quality_checker/leaderboard/synthetic/?sort=drums", ready="tr[data-entry]"
    ),
    PageCase("qc-entry", "anonymous", "/quality_checker/entry/{entry}", ready="svg#qc-plot"),
    PageCase("qc-submit", "ann", "/quality_checker/add"),
    PageCase("api", "anonymous", "/api"),
    PageCase("api-logged-in", "ann", "/api"),
    PageCase("login", "anonymous", "/login"),
    PageCase("register", "anonymous", "/register"),
    PageCase("history", "ann", "/history"),
    PageCase("account", "ann", "/account"),
    PageCase("result", "ann", "/result/{done}", ready="#mixer .track[data-drawn=true] >> nth=2"),
    PageCase("result-anonymous", "anonymous", "/result/{done}", ready="#mixer .track[data-drawn=true] >> nth=2"),
    PageCase("status-waiting", "ann", "/result/{waiting}", ready="#status .status[data-status=waiting]"),
    PageCase("link-waiting", "ann", "/web/remote/{remote}", ready="#remote-status[data-status=waiting]"),
    PageCase("not-found", "anonymous", "/result/no-such-separation", ready="[data-message], main p", status=404),
    PageCase("algorithms-admin", "admin", "/algorithms", ready="[data-install] code"),
    PageCase("separate-not-runnable-admin", "admin", "/?sep_type=40", ready="#fields [data-install] code"),
    PageCase("admin-users", "admin", "/admin/users", ready="tr[data-user]"),
    PageCase("admin-models", "admin", "/admin/models", ready="table.admin-models tbody tr"),
    PageCase("admin-queue", "admin", "/admin/queue", ready="#queue-live"),
    PageCase("admin-refused", "ann", "/admin/users", ready="[data-message]", status=403),
]


@pytest.mark.parametrize("case", PAGES, ids=[c.name for c in PAGES])
def test_the_page_loads_cleanly_and_axe_finds_no_serious_violation(site, case):
    page = site.contexts[case.who].new_page()
    try:
        errors = watch(page)
        url = site.server.url + case.path.format(**site.ids)
        response = page.goto(url)
        assert response is not None and response.status == case.status
        page.locator(case.ready).first.wait_for()
        page.screenshot(path=str(site.shots / f"page-{case.name}.png"), full_page=True)
        assert serious_violations(page) == []
        if case.status != 200:  # the page's own answer is the refusal this case is about, reported twice
            errors = [e for e in errors if e != f"{case.status} {url}" and f"status of {case.status}" not in e]
        assert errors == []
    finally:
        page.close()


def test_a_waveform_drawn_on_a_phone_screen_passes_axe_too(site):
    """The result page at 360 px, where the mixer's rows wrap."""
    context = site.contexts["ann"]
    page = context.new_page()
    page.set_viewport_size({"width": 360, "height": 740})
    try:
        watch(page)
        page.goto(site.server.url + f"/result/{site.ids['done']}")
        page.locator("#mixer .track[data-drawn=true]").nth(2).wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.screenshot(path=str(site.shots / "page-result-360.png"), full_page=True)
        assert serious_violations(page) == []
    finally:
        page.close()
