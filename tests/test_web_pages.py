"""The web page without a browser: every page and fragment renders, forms post only with the session's CSRF
token, a job created on the page runs through the same services as the API, the live status stream sends the
job's states in order, and the zip holds every output."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

import openmvsep.web
from openmvsep.service.catalog import Catalog
from openmvsep.store.models import User
from openmvsep.web import picker
from openmvsep.web.session import _SALT, COOKIE, secret_key
from webpage import PASSWORD, csrf_of, register

from conftest import Harness, make_settings, stereo_mix, wav_bytes

WEB = Path(openmvsep.web.__file__).parent
MANIFEST = json.loads((WEB / "static" / "vendor" / "MANIFEST.json").read_text("utf-8"))["files"]
NAV = ["/", "/demo", "/news", "/quality_checker/", "/algorithms", "/api"]


@pytest.fixture
def site(tmp_path):
    h = Harness(make_settings(tmp_path, web_events_poll_seconds=0.05, web_events_max_seconds=1.0), pages=True)
    yield h
    h.close()


def create(h: Harness, csrf: str, seconds: float = 2.0, **fields) -> dict:
    data = {"sep_type": "55", "add_opt1": "dsp", "output_format": "1", **fields}
    r = h.client.post(
        "/web/separate",
        data=data,
        files={"audiofile": ("song.wav", wav_bytes(stereo_mix(seconds)), "audio/wav")},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )
    return {"status": r.status_code, **r.json()}


class Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src",) and v] + [
            v for k, v in attrs if tag == "link" and k == "href" and v
        ]


# ------------------------------------------------------------------------------------------------ the shell


def test_the_home_page_is_the_separate_page_not_the_apis_404(site):
    r = site.client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<form id="separate-form"' in r.text
    # MVSep's API is unchanged beside it: an unknown path still gets its JSON 404.
    missing = site.client.get("/no/such/page")
    assert missing.status_code == 404 and missing.json()["success"] is False


@pytest.mark.parametrize("path", NAV)
def test_every_page_of_the_navigation_renders_with_the_security_headers(site, path):
    r = site.client.get(path)
    assert r.status_code == 200, path
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    for href, label in zip(NAV, ["Separate", "Demo", "News", "Quality Checker", "Algorithms", "API"]):
        assert f'<a href="{href}"' in r.text and label in r.text
    assert "History" not in r.text and "Account" not in r.text  # only when logged in
    assert '<main id="main"' in r.text and 'class="skip"' in r.text


def test_history_and_account_are_in_the_navigation_once_logged_in(site):
    assert site.client.get("/history", follow_redirects=False).headers["location"] == "/login?next=/history"
    register(site)
    r = site.client.get("/")
    assert '<a href="/history"' in r.text and '<a href="/account"' in r.text
    assert site.client.get("/history").status_code == 200
    assert "ann@example.com" in site.client.get("/account").text


def test_every_script_and_style_is_served_here_byte_identical_to_the_manifest(site):
    html = site.client.get("/").text
    parser = Sources()
    parser.feed(html)
    assert parser.urls
    for url in parser.urls:
        assert url.startswith("/web/static/") and "://" not in url, url
        r = site.client.get(url)
        assert r.status_code == 200, url
        assert "immutable" in r.headers["cache-control"]  # versioned URL
        name = url.removeprefix("/web/static/").split("?")[0]
        if name.startswith("vendor/"):
            assert hashlib.sha256(r.content).hexdigest() == MANIFEST[name.removeprefix("vendor/")]["sha256"]
    assert "://" not in re.sub(r'href="https?://[^"]*"', "", html.split("<body>")[0])  # no CDN in the head


def test_the_vendor_manifest_lists_exactly_the_vendored_files():
    vendor = WEB / "static" / "vendor"
    shipped = {p.relative_to(vendor).as_posix() for p in vendor.rglob("*") if p.is_file()} - {"MANIFEST.json"}
    assert shipped == set(MANIFEST)
    for name, entry in MANIFEST.items():
        assert {"registry", "package", "version", "license", "sha256"} <= set(entry)
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == entry["sha256"], name


def test_only_files_found_at_start_are_served(site):
    for name in ("vendor/MANIFEST.json", "../templates/base.html", "app/..%2F..%2Fsite.py", "nothing.js"):
        assert site.client.get(f"/web/static/{name}").status_code == 404, name


def test_the_wheel_carries_every_template_and_asset():
    """Every non-Python file under web/ matches a package-data pattern of pyproject.toml (a pattern's `*` does not
    cross a folder, as in setuptools)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["openmvsep"]
    root = WEB.parent
    files = [p.relative_to(root).as_posix() for p in WEB.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert files

    def shipped(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pat) and name.count("/") == pat.count("/") for pat in patterns)

    assert [f for f in files if not shipped(f)] == []


# ------------------------------------------------------------------------------------------------ accounts


def test_register_logs_in_and_logout_ends_the_session(site):
    register(site)
    assert "Log out" in site.client.get("/").text
    r = site.client.post("/logout", data={"csrf_token": csrf_of(site.client.get("/").text)}, follow_redirects=False)
    assert r.status_code == 303
    assert "Log out" not in site.client.get("/").text


def test_login_with_a_wrong_password_shows_the_services_message(site):
    register(site)
    site.client.cookies.clear()
    token = csrf_of(site.client.get("/login").text)
    r = site.client.post("/login", data={"csrf_token": token, "email": "ann@example.com", "password": "wrong one"})
    assert r.status_code == 400
    assert "These credentials do not match our records." in r.text
    r = site.client.post(
        "/login", data={"csrf_token": token, "email": "ann@example.com", "password": PASSWORD}, follow_redirects=False
    )
    assert r.status_code == 303
    assert "Log out" in site.client.get("/").text


@pytest.mark.parametrize("token", [None, "forged"])
def test_a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing(site, token):
    site.client.get("/register")  # a session exists, with its own token
    data = {"name": "Eve", "email": "eve@example.com", "password": PASSWORD, "password_confirmation": PASSWORD}
    if token:
        data["csrf_token"] = token
    r = site.client.post("/register", data=data)
    assert r.status_code == 403
    assert "security token is missing or out of date" in r.text
    with site.ctx.db.reader() as s:
        assert s.query(User).count() == 0


def test_the_upload_is_refused_without_the_csrf_header_or_field(site):
    register(site)
    r = site.client.post(
        "/web/separate",
        data={"sep_type": "55", "add_opt1": "dsp"},
        files={"audiofile": ("song.wav", wav_bytes(stereo_mix(1.0)), "audio/wav")},
        headers={"X-CSRF-Token": "forged", "Accept": "application/json"},
    )
    assert r.status_code == 403
    assert "security token" in r.json()["data"]["message"]
    with site.ctx.db.reader() as s:
        from openmvsep.store.models import Job

        assert s.query(Job).count() == 0


def test_registration_closed_shows_no_form_and_the_service_refuses(tmp_path):
    h = Harness(make_settings(tmp_path, registration="closed"), pages=True)
    try:
        r = h.client.get("/register")
        assert "Registration is closed" in r.text and 'action="/register"' not in r.text
        data = {
            "csrf_token": csrf_of(h.client.get("/login").text),
            "name": "A",
            "email": "a@example.com",
            "password": PASSWORD,
            "password_confirmation": PASSWORD,
        }
        r = h.client.post("/register", data=data)
        assert r.status_code == 403 and "Registration is closed on this server" in r.text
    finally:
        h.close()


def test_a_new_api_token_ends_every_web_session(site):
    register(site)
    with site.ctx.db.session() as s:
        s.query(User).update({User.api_token: "X" * 30})
    assert "Log out" not in site.client.get("/").text


def test_the_session_cookie_is_httponly_lax_and_holds_no_api_token(site):
    site.client.get("/register")
    register(site)
    cookie = site.client.cookies.get("openmvsep_session")
    with site.ctx.db.reader() as s:
        token = s.query(User).one().api_token
    assert token not in cookie
    r = site.client.post("/logout", data={"csrf_token": csrf_of(site.client.get("/").text)}, follow_redirects=False)
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header


# ------------------------------------------------------------------------------------------------ the picker


def test_the_picker_lists_every_single_upload_algorithm_runnable_first(site):
    catalog: Catalog = site.ctx.catalog
    html = site.client.get("/").text
    listed = [int(v) for v in re.findall(r'<option value="(\d+)"[^>]*data-search', html)]
    expected = [int(e["render_id"]) for e in catalog.list(picker.SCOPE)]
    assert sorted(listed) == sorted(expected)
    runnable = set(catalog.runnable_sep_types())
    flags = [s in runnable for s in listed]
    first_group = picker.groups(catalog)[0]
    assert any(a.runnable for a in first_group.algorithms)
    assert 55 in runnable and re.search(r'<option value="55"(?![^>]*disabled)', html)
    not_runnable = next(s for s in listed if s not in runnable)
    assert re.search(rf'<option value="{not_runnable}"[^>]*disabled', html)
    assert flags  # every entry was listed


def test_the_fields_fragment_renders_for_every_algorithm_of_every_scope(site):
    catalog: Catalog = site.ctx.catalog
    seen_types = set()
    for scope in ("single_upload", "matchering_upload", "no_upload"):
        for element in catalog.list(scope):
            sep_type = element["render_id"]
            r = site.client.get("/web/separate/fields", params={"sep_type": sep_type})
            assert r.status_code == 200, sep_type
            algorithm = catalog.get(sep_type)
            if scope == picker.SCOPE:
                seen_types |= {f.input_type for f in algorithm.fields}
                assert str(markupsafe.escape(algorithm.name)) in r.text
                shown = set(re.findall(r'id="(add_opt\d)"', r.text))
                hidden = algorithm.hidden_fields({})
                assert shown == {f.name for f in algorithm.fields} - hidden, sep_type
                if not catalog.is_available(sep_type):
                    assert 'role="alert"' in r.text
    assert "select" in seen_types


def test_conditions_show_and_hide_fields_as_the_catalog_says(site):
    catalog: Catalog = site.ctx.catalog
    algorithms = [catalog.get(e["render_id"]) for e in catalog.list(picker.SCOPE)]
    conditional = [(a, f) for a in algorithms for f in a.fields if f.conditions]
    assert conditional
    algorithm, field = conditional[0]
    condition = field.conditions[0]
    other = algorithm.field(condition.depends_on)
    for key in other.options:
        r = site.client.get("/web/separate/fields", params={"sep_type": algorithm.render_id, other.name: key})
        hidden = field.name in algorithm.hidden_fields({other.name: key})
        assert (f'id="{field.name}"' in r.text) is not hidden, key


def test_the_dsp_option_is_the_one_offered_when_only_it_runs(site):
    r = site.client.get("/web/separate/fields", params={"sep_type": 55})
    assert re.search(r'<option value="dsp" selected', r.text)
    assert "Center, Wide" in r.text  # the stems it gives


# ------------------------------------------------------------------------------------------------ jobs


def test_a_job_made_on_the_page_runs_and_its_result_page_lists_every_stem(site):
    csrf = register(site)
    made = create(site, csrf)
    assert made["success"] is True, made
    hash_value = made["data"]["hash"]
    assert made["data"]["link"] == f"/result/{hash_value}"
    assert site.get(hash_value)["status"] == "waiting"  # the API sees the same job
    page = site.client.get(f"/result/{hash_value}")
    assert 'data-status="waiting"' in page.text and 'aria-live="polite"' in page.text
    assert "Cancel" in page.text
    site.run_all()
    page = site.client.get(f"/result/{hash_value}").text
    assert re.findall(r'data-stem="([^"]+)"', page) == ["Center", "Wide"]
    assert page.count("<audio") == 3 and "Download all (zip)" in page and "Expires" in page  # the input's too
    for src in re.findall(r'<audio[^>]*src="([^"]+)"', page):
        assert src.startswith("/storage/") and site.client.get(src).status_code == 200


def test_the_zip_holds_every_output_byte_for_byte(site):
    csrf = register(site)
    hash_value = create(site, csrf)["data"]["hash"]
    site.run_all()
    done = site.get(hash_value)["data"]["files"]
    r = site.client.get(f"/web/jobs/{hash_value}/all.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.testzip() is None
    assert archive.namelist() == [f["download"] for f in done]
    for f in done:
        path = "/" + f["url"].split("://", 1)[1].split("/", 1)[1]
        assert archive.read(f["download"]) == site.client.get(path).content


def test_the_event_stream_sends_the_states_in_order_and_ends_when_done(site):
    csrf = register(site)
    hash_value = create(site, csrf)["data"]["hash"]
    body = site.client.get(f"/web/jobs/{hash_value}/events").text  # the stream ends after web_events_max_seconds
    assert body.startswith("retry: 2000")
    assert re.findall(r"event: (\w+)", body) == ["status"]  # one waiting state, sent once, not once per poll
    assert 'data-status="waiting"' in body
    site.run_all()
    body = site.client.get(f"/web/jobs/{hash_value}/events").text
    assert re.findall(r"event: (\w+)", body) == ["status", "end"]
    assert 'data-status="done"' in body and "data: done" in body
    ids = [int(i) for i in re.findall(r"^id: (\d+)$", body, re.M)]
    assert ids == sorted(ids)


def test_the_polling_fragment_says_what_separation_get_says(site):
    csrf = register(site)
    hash_value = create(site, csrf)["data"]["hash"]
    r = site.client.get(f"/web/jobs/{hash_value}/status")
    assert 'data-status="waiting"' in r.text and "position <strong>1</strong> of 1" in r.text
    assert 'data-status="not_found"' in site.client.get("/web/jobs/nope/status").text


def test_cancel_while_waiting_refunds_and_the_page_says_so(tmp_path):
    h = Harness(make_settings(tmp_path / "c", new_user_credits=10), pages=True)
    try:
        csrf = register(h)
        hash_value = create(h, csrf)["data"]["hash"]
        r = h.client.post(f"/web/jobs/{hash_value}/cancel", data={"csrf_token": csrf}, follow_redirects=False)
        assert r.status_code == 303
        page = h.client.get(r.headers["location"]).text
        assert "The separation was cancelled" in page
        with h.ctx.db.reader() as s:
            assert s.query(User).one().credits == 10
        r = h.client.post(f"/web/jobs/{hash_value}/cancel", data={"csrf_token": csrf})
        assert r.status_code == 400 and "Only a waiting separation can be cancelled" in r.text
    finally:
        h.close()


def test_the_servers_refusals_are_shown_verbatim(site):
    csrf = register(site)
    catalog: Catalog = site.ctx.catalog
    missing = next(  # in the catalog, open to every plan, but it does not run here
        a for g in picker.groups(catalog) for a in g.algorithms if not a.runnable and a.price_coefficient <= 1
    )
    r = create(site, csrf, sep_type=str(missing.sep_type))
    assert r["status"] == 400 and r["data"]["message"].startswith(missing.reason)  # what the picker showed
    assert create(site, csrf)["success"]
    second = create(site, csrf)  # a free plan: one job at a time
    with site.ctx.db.reader() as s:
        token = s.query(User).one().api_token
    api_answer = site.create(token, wav_bytes(stereo_mix(1.0)))  # the same request through the API
    assert second["status"] == api_answer["status"] == 400
    assert second["data"]["message"] == api_answer["message"]


def test_an_anonymous_upload_is_refused_with_the_apis_message(site):
    r = create(site, csrf_of(site.client.get("/").text))
    assert r["status"] == 401 and r["data"]["message"] == "api_token is required"


def test_an_oversized_upload_is_refused_before_it_is_read(tmp_path):
    h = Harness(make_settings(tmp_path, max_upload_bytes=100_000), pages=True)
    try:
        csrf = register(h)
        assert 'data-max-bytes="100000"' in h.client.get("/").text  # the limit, before any upload
        r = create(h, csrf, seconds=3.0)
        assert r["status"] == 413 and "too large" in r["message"].lower()
        assert h.ctx.jobs.queries.history(api_token_of(h), 0, 10) == []  # nothing made
        scratch = h.settings.scratch_root
        assert not scratch.exists() or not any(scratch.iterdir())  # and no partial upload left behind
    finally:
        h.close()


def test_an_unknown_result_is_a_page_not_json(site):
    r = site.client.get("/result/20990101000000-0000000000-nothing.wav")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "does not exist" in r.text
    assert site.client.get("/web/jobs/nothing/all.zip").status_code == 404


def api_token_of(h: Harness) -> str:
    with h.ctx.db.reader() as s:
        return s.query(User).one().api_token


def test_a_file_that_is_not_audio_is_refused_with_a_plain_message_and_creates_nothing(site):
    csrf = register(site)
    r = site.client.post(
        "/web/separate",
        data={"sep_type": "55", "add_opt1": "dsp", "output_format": "1"},
        files={"audiofile": ("notes.txt", b"this is not audio at all\n" * 40, "text/plain")},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )
    assert r.status_code == 400 and r.json()["success"] is False
    assert "audio" in r.json()["data"]["message"].lower()
    with site.ctx.db.reader() as s:
        assert s.query(User).one().credits == site.settings.new_user_credits  # nothing charged
    assert site.ctx.jobs.queries.history(api_token_of(site), 0, 10) == []


class _SignedLongAgo(TimestampSigner):
    """Signs as if it were a month ago: a cookie past any session's age, without waiting for one to expire."""

    def get_timestamp(self) -> int:
        return super().get_timestamp() - 31 * 24 * 3600


def test_an_expired_session_is_logged_out_and_its_forms_change_nothing(site):
    csrf = register(site)
    assert "/account" in site.client.get("/").text  # logged in
    sessions = site.app.state.web.sessions
    data = sessions.serializer.loads(site.client.cookies[COOKIE])  # the same session (account, CSRF token)...
    old = URLSafeTimedSerializer(secret_key(site.settings), salt=_SALT, signer=_SignedLongAgo)
    site.client.cookies.clear()
    site.client.cookies.set(COOKIE, old.dumps(data))  # ...signed longer ago than web_session_hours
    page = site.client.get("/").text
    assert "/account" not in page and "/login" in page  # the cookie is past its age: logged out
    r = create(site, csrf)
    assert r["status"] in (401, 403) and r["success"] is False and r["data"]["message"]
    assert site.ctx.jobs.queries.history(api_token_of(site), 0, 10) == []
