"""Private results (OPENMVSEP_PRIVATE_RESULTS), without a browser: another account, or a visitor not logged in,
gets a 403 page with the reason for someone else's result page, zip, waveform peaks, live status, event stream and
link download, and nothing changes; the owner and admins see them; published demos and jobs made without an account
stay public by hash; with the setting off (the default) every result is public by hash, as on MVSep; the API's
`separation/get` answers any hash either way."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from openmvsep.store.models import Job, User
from webpage import csrf_of, register

from conftest import Harness, make_settings, stereo_mix, wav_bytes


@pytest.fixture
def make_site(tmp_path):
    made: list[Harness] = []

    def factory(**overrides) -> Harness:
        h = Harness(make_settings(tmp_path / f"s{len(made)}", **overrides), pages=True)
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def visitor(h: Harness, email: str | None = None) -> tuple[TestClient, str]:
    """Another browser on the same site: logged in as a new account `email`, or not logged in (None); its CSRF
    token."""
    client = TestClient(h.app)
    client.__enter__()
    if email is None:
        return client, csrf_of(client.get("/").text)
    token = csrf_of(client.get("/register").text)
    data = {"csrf_token": token, "name": "Other", "email": email, "password": "correct horse 1"}
    data["password_confirmation"] = data["password"]
    assert client.post("/register", data=data, follow_redirects=False).status_code == 303
    return client, csrf_of(client.get("/").text)


def own_job(h: Harness, csrf: str) -> str:
    r = h.client.post(
        "/web/separate",
        data={"sep_type": "55", "add_opt1": "dsp", "output_format": "1"},
        files={"audiofile": ("secret song.wav", wav_bytes(stereo_mix(1.0)))},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]["hash"]


def api_token(h: Harness, email: str) -> str:
    with h.ctx.db.reader() as s:
        return s.query(User).filter_by(email=email).one().api_token


def job_row(h: Harness, hash_value: str) -> tuple:
    with h.ctx.db.reader() as s:
        job = s.query(Job).filter_by(hash=hash_value).one()
        return job.status, job.files, job.updated_at, job.credits_charged, job.files_deleted


def addresses(client: TestClient, hash_value: str) -> dict[str, str]:
    """The page's addresses of a job, read from the owner's result page (`client`)."""
    page = client.get(f"/result/{hash_value}").text
    return {
        "result": f"/result/{hash_value}",
        "zip": f"/web/jobs/{hash_value}/all.zip",
        "peaks": html.unescape(re.search(r'data-peaks="([^"]+/peaks/1\?v=[^"]+)"', page).group(1)),
        "status": f"/web/jobs/{hash_value}/status",
        "events": f"/web/jobs/{hash_value}/events",
    }


def test_another_account_and_a_visitor_get_a_clear_403_and_change_nothing(make_site):
    site = make_site(private_results=True)
    csrf = register(site)
    done = own_job(site, csrf)
    site.run_all()
    urls = addresses(site.client, done)
    before = job_row(site, done)
    storage_link = re.search(r'href="(/storage/[^"]+)"', site.client.get(urls["result"]).text).group(1)

    bob, bob_csrf = visitor(site, "bob@example.com")
    anonymous, _ = visitor(site)
    for client in (bob, anonymous):
        for name in ("result", "zip", "status", "events"):
            r = client.get(urls[name])
            assert r.status_code == 403, (name, r.status_code)
            assert "only the account that made it can see it" in r.text, name
            assert "secret song" not in r.text and storage_link not in r.text and "Center" not in r.text
        peaks = client.get(urls["peaks"])
        assert peaks.status_code == 403
        assert peaks.json() == {
            "success": False,
            "data": {"message": "This separation is private: only the account that made it can see it."},
        }
    assert 'href="/login?next=/result/' in anonymous.get(urls["result"]).text  # a way in for its owner
    assert "/login?next=" not in bob.get(urls["result"]).text
    refused = bob.post(f"/web/jobs/{done}/cancel", data={"csrf_token": bob_csrf}, follow_redirects=False)
    assert refused.status_code in (400, 403, 404)
    assert job_row(site, done) == before  # nothing was changed by any of it

    # The owner sees everything; the API still answers the hash to anyone (MVSep's clients poll without a token).
    mine = site.client.get(urls["result"])
    assert mine.status_code == 200 and "secret song.wav" in mine.text and 'data-stem="Center"' in mine.text
    assert site.client.get(urls["zip"]).status_code == 200
    peaks = site.client.get(urls["peaks"])
    assert peaks.status_code == 200 and peaks.headers["cache-control"].startswith("private")
    assert site.client.get(urls["status"]).status_code == 200
    assert "event: end" in site.client.get(urls["events"]).text
    assert anonymous.get("/api/separation/get", params={"hash": done}).json()["status"] == "done"
    for client in (bob, anonymous):
        client.__exit__(None, None, None)


def test_an_admin_sees_any_result_when_results_are_private(make_site):
    site = make_site(private_results=True)
    done = own_job(site, register(site))
    site.run_all()
    admin, _ = visitor(site, "root@example.com")
    with site.ctx.db.session() as s:
        s.query(User).filter_by(email="root@example.com").one().is_admin = True
    page = admin.get(f"/result/{done}")
    assert page.status_code == 200 and 'data-stem="Wide"' in page.text
    assert admin.get(f"/web/jobs/{done}/all.zip").status_code == 200
    admin.__exit__(None, None, None)


def test_a_waiting_job_and_a_link_download_are_private_too(make_site):
    site = make_site(private_results=True, free_concurrent_jobs=0)  # the link beside the waiting job
    csrf = register(site)
    waiting = own_job(site, csrf)  # no worker runs: it stays waiting
    token = api_token(site, "ann@example.com")
    short = site.client.post(
        "/api/separation/create",
        data={"api_token": token, "sep_type": "55", "add_opt1": "dsp", "url": "http://127.0.0.1:9/a.wav"},
    ).json()["data"]["hash"]
    bob, _ = visitor(site, "bob@example.com")
    for path in (f"/result/{waiting}", f"/web/jobs/{waiting}/status", f"/web/remote/{short}"):
        r = bob.get(path)
        assert r.status_code == 403 and "only the account that made it" in r.text, path
        assert site.client.get(path).status_code == 200, path
    assert "position" in site.client.get(f"/web/remote/{short}").text
    bob.__exit__(None, None, None)


def test_published_demos_and_jobs_made_without_an_account_stay_public(make_site):
    site = make_site(private_results=True, anonymous_jobs=True)
    register(site)
    token = api_token(site, "ann@example.com")
    demo = site.create(token, wav_bytes(stereo_mix(1.0)), is_demo="1")["data"]["hash"]
    site.run_all()
    nobody = site.create(None, wav_bytes(stereo_mix(1.0)), filename="anon.wav")["data"]["hash"]
    site.run_all()
    bob, _ = visitor(site, "bob@example.com")
    for hash_value in (demo, nobody):
        page = bob.get(f"/result/{hash_value}")
        assert page.status_code == 200 and 'data-stem="Center"' in page.text
        assert bob.get(f"/web/jobs/{hash_value}/all.zip").status_code == 200
    bob.__exit__(None, None, None)


def test_results_are_public_by_hash_when_the_setting_is_off(make_site):
    site = make_site()  # the default, as MVSep: a result link works for whoever has it
    done = own_job(site, register(site))
    site.run_all()
    urls = addresses(site.client, done)
    anonymous, _ = visitor(site)
    for name in ("result", "zip", "peaks", "status"):
        assert anonymous.get(urls[name]).status_code == 200, name
    assert anonymous.get(urls["peaks"]).headers["cache-control"].startswith("public")
    anonymous.__exit__(None, None, None)
