"""The web page's History, Account, API and Quality Checker pages without a browser: each reads and writes through
the services the API uses, so what the page shows and changes is what the API then answers."""

from __future__ import annotations

import contextlib
import html
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openmvsep.quality.synth import synthesize_dataset
from openmvsep.service.errors import InvalidToken
from openmvsep.store.models import Job, QcEntry, User
from openmvsep.web.quality_plot import nice_ticks, per_track_plot
from webpage import register

from conftest import Harness, make_settings, stereo_mix, wav_bytes
from processes import postgres_database

TRACKS, SECONDS = 3, 1.0


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return synthesize_dataset(tmp_path_factory.mktemp("qc") / "synth", tracks=TRACKS, seconds=SECONDS)


@pytest.fixture
def site(tmp_path, dataset_dir):
    h = Harness(
        make_settings(tmp_path, web_history_page_size=2, web_leaderboard_page_size=1, qc_secondary_metrics=False),
        pages=True,
    )
    h.ctx.quality.register_dataset(dataset_dir)
    yield h
    h.close()


def api_token(h: Harness, email: str = "ann@example.com") -> str:
    with h.ctx.db.reader() as s:
        return s.query(User).filter_by(email=email).one().api_token


# ---------------------------------------------------------------- history


def test_history_pages_through_the_users_jobs_with_status_algorithm_link_and_expiry(site):
    register(site)
    token = api_token(site)
    hashes = []
    for i in range(3):  # one at a time: the plan allows one job in progress
        hashes.append(site.create(token, wav_bytes(stereo_mix(1.0)), filename=f"song{i}.wav")["data"]["hash"])
        site.run_all()
    site.create(site.user("other@example.com"), wav_bytes(stereo_mix(1.0)), filename="theirs.wav")

    first = site.client.get("/history")
    assert first.status_code == 200
    assert [f"/result/{h}" in first.text for h in hashes] == [False, True, True]  # newest first, 2 a page
    assert "song2.wav" in first.text and "theirs.wav" not in first.text
    assert first.text.count('class="status-done"') == 2 and "Ensemble" not in first.text
    assert re.search(r"<td>~7[12] h</td>", first.text) and 'href="/history?page=2"' in first.text
    second = site.client.get("/history?page=2")
    assert f"/result/{hashes[0]}" in second.text and f"/result/{hashes[2]}" not in second.text
    assert 'href="/history?page=3"' not in second.text and 'href="/history?page=1"' in second.text
    # The same rows the API's separation_history gives for this token.
    api = site.client.get("/api/app/separation_history", params={"api_token": token, "limit": 2}).json()["data"]
    assert [row["hash"] for row in api] == hashes[:0:-1]
    assert site.client.get("/history?page=abc").status_code == 200  # a bad page number is page 1

    # A failed job shows its message, and (refunded, files gone) no credits and no expiry, as the API reports it.
    with site.ctx.db.session() as s:
        job = s.query(Job).filter_by(hash=hashes[2]).one()
        job.status, job.message = "failed", "The input could not be decoded"
    row = re.search(rf'<tr data-hash="{re.escape(hashes[2])}">.*?</tr>', site.client.get("/history").text, re.S)
    assert (
        "The input could not be decoded" in row.group(0) and "expired" in row.group(0) and "<td>—</td>" in row.group(0)
    )


def test_history_and_account_need_a_login(site):
    for path in ("/history", "/account"):
        r = site.client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}"


# ---------------------------------------------------------------- account


def test_the_account_page_masks_the_token_and_shows_it_only_when_asked(site):
    csrf = register(site)
    token = api_token(site)
    page = site.client.get("/account").text
    assert token not in page and token[:4] + "•" in page
    refused = site.client.post("/account/token/show", headers={"Accept": "application/json"})
    assert refused.status_code == 403 and token not in refused.text
    shown = site.client.post("/account/token/show", headers={"Accept": "application/json", "X-CSRF-Token": csrf})
    assert shown.json() == {"api_token": token} and shown.headers["cache-control"] == "no-store"
    page = site.client.post("/account/token/show", data={"csrf_token": csrf})  # without the script
    assert f'value="{token}"' in page.text


def test_regenerating_the_token_asks_first_then_the_old_token_stops_working_on_the_api(site):
    csrf = register(site)
    old = api_token(site)
    ask = site.client.post("/account/token", data={"csrf_token": csrf})
    assert ask.status_code == 200 and 'id="regenerate-confirm"' in ask.text
    assert api_token(site) == old  # asking changes nothing
    assert site.client.post("/account/token", data={"confirm": "yes"}).status_code == 403  # no CSRF token
    assert api_token(site) == old

    done = site.client.post("/account/token", data={"csrf_token": csrf, "confirm": "yes"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/account?regenerated=1"
    new = api_token(site)
    assert new != old
    page = site.client.get("/account?regenerated=1")
    assert page.status_code == 200 and "the old one no longer works" in page.text  # still logged in
    before = site.client.get("/api/app/user", params={"api_token": old})
    assert before.status_code == 400 and before.json()["success"] is False
    assert before.json()["data"] == {"message": "Invalid API key"}
    assert site.client.get("/api/app/user", params={"api_token": new}).json()["data"]["email"] == "ann@example.com"


def test_the_account_service_regenerates_a_token(site):
    old = site.user("svc@example.com")
    user = site.ctx.accounts.regenerate_token(old)
    assert user.api_token != old and len(user.api_token) == len(old)
    assert site.ctx.accounts.require(user.api_token).email == "svc@example.com"
    with pytest.raises(InvalidToken):
        site.ctx.accounts.require(old)
    with pytest.raises(InvalidToken):
        site.ctx.accounts.regenerate_token(old)  # the old token cannot make another


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_account_page_lists_the_latest_credit_changes(tmp_path, database):
    with contextlib.ExitStack() as stack:
        url = {"database_url": stack.enter_context(postgres_database())} if database == "postgresql" else {}
        h = Harness(make_settings(tmp_path, new_user_credits=50, **url), pages=True)
        stack.callback(h.close)
        register(h)
        token = api_token(h)
        h.client.post("/api/app/enable_premium", data={"api_token": token})
        made = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
        rows = re.findall(
            r"<tr><td>[^<]+</td><td class=\"num\">([+-]\d+)</td><td>(\w+)</td>", h.client.get("/account").text
        )
        with h.ctx.db.reader() as s:
            charged = s.query(Job).filter_by(hash=made).one().credits_charged
        assert charged > 0 and rows == [(f"-{charged}", "charge"), ("+50", "grant")]
        assert f'href="/result/{made}"' in h.client.get("/account").text


def test_toggles_set_what_the_api_reports_and_an_unknown_one_changes_nothing(site):
    csrf = register(site)
    token = api_token(site)
    r = site.client.post(
        "/account/settings", data={"csrf_token": csrf, "flag": "premium_enabled", "value": "1"}, follow_redirects=False
    )
    assert r.status_code == 303
    site.client.post("/account/settings", data={"csrf_token": csrf, "flag": "long_filenames_enabled", "value": "1"})
    data = site.client.get("/api/app/user", params={"api_token": token}).json()["data"]
    assert data["premium_enabled"] == 1 and data["long_filenames_enabled"] == 1
    page = site.client.get("/account").text
    assert re.search(r'id="premium_enabled-state">on<', page)
    bad = site.client.post("/account/settings", data={"csrf_token": csrf, "flag": "is_admin", "value": "1"})
    assert bad.status_code == 400 and "Unknown setting" in bad.text
    site.client.post("/account/settings", data={"csrf_token": csrf, "flag": "premium_enabled", "value": "0"})
    data = site.client.get("/api/app/user", params={"api_token": token}).json()["data"]
    assert data["premium_enabled"] == 0 and data["long_filenames_enabled"] == 1


def test_the_api_page_fills_in_the_token_only_for_its_owner(site):
    anonymous = site.client.get("/api").text
    assert "api_token=YOUR_API_TOKEN" in anonymous and '"api_token": "YOUR_API_TOKEN"' in anonymous
    register(site)
    token = api_token(site)
    mine = site.client.get("/api").text
    assert f"api_token={token}" in mine and f'"api_token": "{token}"' in mine and "YOUR_API_TOKEN" not in mine
    assert "http://testserver/api/separation/create" in mine and "/api/separation/get" in mine


# ---------------------------------------------------------------- Quality Checker


def noisy_estimate(dataset_dir: Path, song: str, stem: str, level: float, seed: int) -> bytes:
    ref, rate = sf.read(dataset_dir / song / f"{stem}.wav", dtype="int16", always_2d=True)
    rng = np.random.default_rng(seed)
    rms = np.sqrt(np.mean(ref.astype(np.float64) ** 2)) or 1.0
    est = np.clip(np.round(ref + rng.standard_normal(ref.shape) * level * rms), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, est, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def submission(dataset_dir: Path, levels: dict[str, float]) -> bytes:
    songs = sorted(p.name for p in dataset_dir.iterdir() if p.is_dir())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, song in enumerate(songs):
            for j, (stem, level) in enumerate(levels.items()):
                z.writestr(f"{song}_{stem}.wav", noisy_estimate(dataset_dir, song, stem, level, i * 10 + j))
    return buf.getvalue()


def submit(h: Harness, csrf: str | None, zip_bytes: bytes, name: str, **fields):
    headers = {"Accept": "application/json", **({"X-CSRF-Token": csrf} if csrf else {})}
    data = {"dataset_type": "0", "algo_name": name, "main_text": "notes", "password": "delete-me", **fields}
    return h.client.post(
        "/quality_checker/add",
        data=data,
        files={"zipfile": ("entry.zip", zip_bytes, "application/zip")},
        headers=headers,
    )


def entries(h: Harness) -> int:
    with h.ctx.db.reader() as s:
        return s.query(QcEntry).count()


def test_the_index_lists_datasets_with_their_mixtures_zip(site):
    page = site.client.get("/quality_checker/")
    assert page.status_code == 200
    link = re.search(r'href="(/storage/public/[^"]+\.zip)"', page.text).group(1)
    mixtures = zipfile.ZipFile(io.BytesIO(site.client.get(link).content))
    assert len(mixtures.namelist()) == TRACKS and all(n.endswith("_mixture.wav") for n in mixtures.namelist())
    assert 'href="/quality_checker/leaderboard/synthetic/"' in page.text
    assert site.client.get("/quality_checker", follow_redirects=False).status_code == 308


def test_submit_refusals_are_the_services_messages_and_leave_nothing(site, dataset_dir):
    good = submission(dataset_dir, {"vocals": 0.1})
    anonymous = submit(site, None, good, "X")
    assert anonymous.status_code == 400 and "Log in to submit" in anonymous.json()["data"]["message"]
    csrf = register(site)
    assert submit(site, None, good, "X").status_code == 403
    not_zip = submit(site, csrf, b"not a zip at all", "X")
    api = site.client.post(
        "/api/quality_checker/add",
        data={"api_token": api_token(site), "algo_name": "X", "dataset_type": "0"},
        files={"zipfile": ("entry.zip", b"not a zip at all", "application/zip")},
    )
    assert not_zip.status_code == api.status_code == 400
    assert not_zip.json()["data"]["message"] == api.json()["data"]["message"]
    unknown = submit(site, csrf, good, "X", dataset_type="7")
    assert "Unknown dataset_type 7" in unknown.json()["data"]["message"]
    assert "algo_name field is required" in submit(site, csrf, good, "  ").json()["data"]["message"]
    assert entries(site) == 0


def test_submit_score_leaderboard_by_stem_entry_plot_and_delete(site, dataset_dir):
    csrf = register(site)
    a = submit(site, csrf, submission(dataset_dir, {"vocals": 0.05, "drums": 0.5}), "Alpha vocals")
    b = submit(site, csrf, submission(dataset_dir, {"vocals": 0.5, "drums": 0.05}), "Beta drums")
    assert a.status_code == b.status_code == 200, a.text
    a_id, b_id = a.json()["data"]["id"], b.json()["data"]["id"]
    assert a.json()["data"]["link"] == f"/quality_checker/entry/{a_id}"
    waiting = site.client.get(f"/quality_checker/entry/{a_id}").text
    assert "waiting" in waiting and 'http-equiv="refresh"' in waiting
    site.run_all()

    board = "/quality_checker/leaderboard/synthetic/"

    def order(query: str) -> list[int]:
        page = site.client.get(board + query)
        assert page.status_code == 200, page.text
        return [int(x) for x in re.findall(r'<tr data-entry="(\d+)"', page.text)]

    # One entry a page (web_leaderboard_page_size=1): page 1 holds the best by the chosen stem.
    assert order("?sort=vocals") == [a_id] and order("?sort=vocals&page=2") == [b_id]
    assert order("?sort=drums") == [b_id] and order("?sort=drums&page=2") == [a_id]
    assert order("?sort=drums&algo_name_filter=alpha") == [a_id]
    page2 = site.client.get(board + "?sort=drums&page=2").text
    assert "<td>2</td>" in page2 and "---" in page2  # rank 2; bass was not submitted
    assert 'rel="next"' in site.client.get(board + "?sort=drums").text and 'rel="next"' not in page2
    assert order("?sort=vocals&ranking_metrics=framewise_sdr") == [a_id]
    assert site.client.get("/quality_checker/multisong_leaderboard?sort=drums").text.count('data-entry="') == 1
    bad = site.client.get(board + "?sort=kazoo")
    assert bad.status_code == 400 and "Unknown sort key 'kazoo'" in html.unescape(bad.text)
    assert site.client.get("/quality_checker/leaderboard/nope/").status_code == 404

    entry = site.client.get(f"/quality_checker/entry/{a_id}").text
    api = site.client.get("/api/quality_checker/entry", params={"id": a_id}).json()["data"]
    assert "scored" in entry and 'http-equiv="refresh"' not in entry
    assert f"{api['metrics']['vocals']['sdr']:.4f}" in entry  # all metrics per stem
    song = sorted(api["tracks"])[0]
    assert f"{api['tracks'][song]['vocals']['sdr']:.4f}" in entry  # the per-track table
    svg = re.search(r"<svg.*?</svg>", entry, re.S).group(0)
    assert svg.count("<polyline") == 2 and f"vocals, {song}: {api['tracks'][song]['vocals']['sdr']:.2f}" in svg
    assert "style=" not in svg and "<script" not in svg

    wrong = site.client.post(f"/quality_checker/entry/{a_id}/delete", data={"csrf_token": csrf, "password": "nope"})
    assert wrong.status_code == 400 and "Wrong password" in wrong.text and entries(site) == 2
    no_csrf = site.client.post(f"/quality_checker/entry/{a_id}/delete", data={"password": "delete-me"})
    assert no_csrf.status_code == 403 and entries(site) == 2
    gone = site.client.post(f"/quality_checker/entry/{a_id}/delete", data={"csrf_token": csrf, "password": "delete-me"})
    assert gone.status_code == 200 and "was deleted" in gone.text and entries(site) == 1
    assert site.client.get(f"/quality_checker/entry/{a_id}").status_code == 404


def test_the_plot_scales_to_the_values_and_marks_missing_ones():
    assert nice_ticks(-1.3, 12.7) == [-5, 0, 5, 10, 15]
    assert nice_ticks(0.0, 0.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    svg = str(per_track_plot(["t1", "t2", "t<3>"], {"vocals": [1.0, None, 3.0], "bass": [None, None, None]}, "SDR"))
    assert "t&lt;3&gt;" in svg and "<t<3>" not in svg
    assert svg.count("<polyline") == 1  # bass has no point; vocals skips the missing track
    assert "vocals, t1: 1.00" in svg and "vocals, t2" not in svg


# ---------------------------------------------------------------- news and demo


def test_news_pages_list_by_language_and_show_one_entry_with_its_html_cleaned(tmp_path):
    h = Harness(make_settings(tmp_path, web_news_page_size=1), pages=True)
    try:
        first = h.ctx.news.add("Old news", "<p>Before</p>")
        h.ctx.news.add(
            "Fresh", '<p onclick="x()">New <a href="https://example.com/x">model</a><script>bad()</script></p>'
        )
        h.ctx.news.add("Neuigkeit", "<p>Neu</p>", lang="de")
        page = h.client.get("/news").text
        assert "Fresh" in page and "Old news" not in page and "Neuigkeit" not in page  # one a page, newest first
        assert '<a href="https://example.com/x" rel="noopener noreferrer">model</a>' in page
        assert "bad()" not in page and "onclick" not in page
        assert "Old news" in h.client.get("/news?page=2").text
        assert "Neuigkeit" in h.client.get("/news?lang=de").text
        item = h.client.get(f"/news/{first.id}")
        assert item.status_code == 200 and "<p>Before</p>" in item.text
        assert h.client.get("/news/999").status_code == 404 and h.client.get("/news/x1").status_code == 404
    finally:
        h.close()


def test_the_demo_gallery_plays_published_results_and_filters_by_algorithm(site):
    token = site.user("demo@example.com")
    shown = site.create(token, wav_bytes(stereo_mix(1.0)), filename="shown.wav", is_demo="1")["data"]["hash"]
    site.run_all()
    site.create(token, wav_bytes(stereo_mix(1.0)), filename="private.wav")
    site.run_all()
    page = site.client.get("/demo").text
    assert f'href="/result/{shown}"' in page and "private.wav" not in page
    players = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    job = site.ctx.jobs.queries.job(shown)
    assert len(players) == 1 + len(job.files) and all(site.client.get(p).status_code == 200 for p in players)
    assert f'href="/result/{shown}"' in site.client.get("/demo?algorithm_id=55").text
    assert "No demos for this algorithm" in site.client.get("/demo?algorithm_id=20").text
    assert 'value="55" selected' in site.client.get("/demo?algorithm_id=55").text
