"""The admin pages without a browser (/admin/…), and the account rules behind them.

Only admins get in (anonymous visitors go to the login form, other accounts get a 403 and change nothing); every
form needs the session's CSRF token; a credit grant is a `grant` row of the ledger that the API's `app/user`
shows; a disabled account can neither log in nor use its token, on the API or the page; weights download and
verify in the background while the page polls; the queue panel shows the waiting and running work by plan and
each busy worker's heartbeat."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from openmvsep.cli import app as cli_app
from openmvsep.service import lifecycle
from openmvsep.service.errors import InvalidToken, NotFound, ServiceError, ValidationFailed
from openmvsep.store.models import CreditEntry, User
from webpage import csrf_of

from conftest import Harness, make_settings, stereo_mix, wav_bytes
from processes import postgres_database

PASSWORD = "password123"  # Harness.user's
ADMIN_GETS = ["/admin", "/admin/users", "/admin/models", "/admin/models/tasks", "/admin/queue", "/admin/queue/live"]
ADMIN_POSTS = [
    "/admin/users/1/credits",
    "/admin/users/1/premium",
    "/admin/users/1/token",
    "/admin/users/1/disabled",
    "/admin/models/download",
    "/admin/models/verify",
]


@pytest.fixture
def site(tmp_path):
    h = Harness(make_settings(tmp_path, admin_users_per_page=2, weights_recheck_seconds=0), pages=True)
    yield h
    h.close()


def make_admin(h: Harness, email: str = "boss@example.com") -> str:
    token = h.user(email)
    h.ctx.accounts.set_admin(email, True)
    return token


def log_in(h: Harness, email: str) -> str:
    """Log the page's client in; the session's CSRF token."""
    r = h.client.post(
        "/login",
        data={"csrf_token": csrf_of(h.client.get("/login").text), "email": email, "password": PASSWORD},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(h.client.get("/").text)


def user_id(h: Harness, email: str) -> int:
    with h.ctx.db.reader() as s:
        return s.scalar(select(User.id).where(User.email == email))


def api_user(h: Harness, token: str):
    return h.client.get("/api/app/user", params={"api_token": token})


def refused(h: Harness, token: str) -> bool:
    """`app/user` turns the token away, in MVSep's shape."""
    r = api_user(h, token)
    return r.status_code == 400 and r.json()["success"] is False


# ------------------------------------------------------------------------------------------------ who gets in


def test_anonymous_visitors_are_sent_to_the_login_form(site):
    for path in ADMIN_GETS:
        r = site.client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fadmin"), path
    for path in ADMIN_POSTS:
        r = site.client.post(path, data={"credits": "5"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


def test_an_account_that_is_not_an_admin_gets_403_and_changes_nothing(site):
    token = site.user("ann@example.com")
    csrf = log_in(site, "ann@example.com")
    assert 'href="/admin"' not in site.client.get("/").text  # not in the nav either
    for path in ADMIN_GETS:
        r = site.client.get(path, follow_redirects=False)
        assert r.status_code == 403 and "not one" in r.text, path
    me = user_id(site, "ann@example.com")
    for path in ADMIN_POSTS:
        r = site.client.post(path.replace("/1/", f"/{me}/"), data={"csrf_token": csrf, "credits": "50", "value": "on"})
        assert r.status_code == 403, path
    data = api_user(site, token).json()["data"]
    assert data["premium_minutes"] == 0 and data["premium_enabled"] == 0 and data["api_token"] == token


def test_admins_see_the_admin_link_and_pages(site):
    make_admin(site)
    log_in(site, "boss@example.com")
    assert '<a href="/admin">Admin</a>' in site.client.get("/").text
    for path in ADMIN_GETS:
        r = site.client.get(path)
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["content-security-policy"]


# ------------------------------------------------------------------------------------------------ users


def test_a_grant_is_a_ledger_row_the_api_shows(site):
    token = site.user("ann@example.com")
    make_admin(site)
    csrf = log_in(site, "boss@example.com")
    ann = user_id(site, "ann@example.com")
    r = site.client.post(f"/admin/users/{ann}/credits", data={"csrf_token": csrf, "credits": "120"})
    assert r.status_code == 200 and "ann@example.com now has 120 credits (+120)." in r.text
    r = site.client.post(f"/admin/users/{ann}/credits", data={"csrf_token": csrf, "credits": "-20"})
    assert "now has 100 credits (-20)" in r.text
    assert api_user(site, token).json()["data"]["premium_minutes"] == 100
    with site.ctx.db.reader() as s:
        rows = s.execute(select(CreditEntry.delta, CreditEntry.reason).where(CreditEntry.user_id == ann)).all()
    assert sorted(rows) == [(-20, "grant"), (120, "grant")]


@pytest.mark.parametrize("value", ["", "ten", "1.5", "0", "-101", "99999999999999", "+"])
def test_a_bad_grant_is_refused_and_changes_nothing(site, value):
    token = site.user("ann@example.com", credits=100)
    make_admin(site)
    csrf = log_in(site, "boss@example.com")
    r = site.client.post(
        f"/admin/users/{user_id(site, 'ann@example.com')}/credits", data={"csrf_token": csrf, "credits": value}
    )
    assert r.status_code == 400 and 'role="alert"' in r.text
    assert api_user(site, token).json()["data"]["premium_minutes"] == 100


def test_forms_without_the_sessions_csrf_token_change_nothing(site):
    token = site.user("ann@example.com")
    make_admin(site)
    log_in(site, "boss@example.com")
    ann = user_id(site, "ann@example.com")
    for data in ({"credits": "5"}, {"credits": "5", "csrf_token": "forged"}):
        r = site.client.post(f"/admin/users/{ann}/credits", data=data)
        assert r.status_code == 403 and "security token" in r.text
    r = site.client.post(f"/admin/users/{ann}/token", data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert api_user(site, token).json()["data"]["premium_minutes"] == 0
    assert api_user(site, token).json()["data"]["api_token"] == token


def test_search_and_paging(site):
    make_admin(site)
    for name in ("ann", "bob", "cat", "annette"):
        site.user(f"{name}@example.com")
    log_in(site, "boss@example.com")
    page1 = site.client.get("/admin/users").text
    assert "5 accounts." in page1 and "Page 1 of 3" in page1 and 'rel="next"' in page1
    emails = re.findall(r'data-user="([^"]+)"', page1)
    assert emails == ["annette@example.com", "cat@example.com"]  # newest first, two per page
    page3 = site.client.get("/admin/users", params={"page": "3"}).text
    assert re.findall(r'data-user="([^"]+)"', page3) == ["boss@example.com"] and 'rel="next"' not in page3
    found = site.client.get("/admin/users", params={"q": "ANN"}).text
    assert re.findall(r'data-user="([^"]+)"', found) == ["annette@example.com", "ann@example.com"]
    assert site.client.get("/admin/users", params={"q": "%"}).text.count("data-user=") == 0  # a literal %
    assert site.client.get("/admin/users", params={"page": "x"}).status_code == 200


def test_premium_and_token_reset(site):
    token = site.user("ann@example.com")
    make_admin(site)
    csrf = log_in(site, "boss@example.com")
    ann = user_id(site, "ann@example.com")
    r = site.client.post(f"/admin/users/{ann}/premium", data={"csrf_token": csrf, "value": "on"})
    assert "Premium is on for ann@example.com." in r.text
    assert api_user(site, token).json()["data"]["premium_enabled"] == 1
    r = site.client.post(f"/admin/users/{ann}/token", data={"csrf_token": csrf})
    assert "has a new API token" in r.text
    assert refused(site, token)  # the old token is void
    new = site.ctx.accounts.find(ann).api_token
    assert new != token and api_user(site, new).json()["data"]["premium_enabled"] == 1
    r = site.client.post(f"/admin/users/{ann}/premium", data={"csrf_token": csrf, "value": "off"})
    assert api_user(site, new).json()["data"]["premium_enabled"] == 0
    assert site.client.post("/admin/users/99999/premium", data={"csrf_token": csrf}).status_code == 404
    assert site.client.post(f"/admin/users/{ann}/nonsense", data={"csrf_token": csrf}).status_code == 404
    r = site.client.post("/admin/users/abc/premium", data={"csrf_token": csrf})
    assert r.status_code == 404 and "There is no account" in r.text


def test_a_disabled_account_cannot_log_in_or_use_its_token(site):
    token = site.user("ann@example.com")
    make_admin(site)
    assert (
        site.client.post("/api/app/login", data={"email": "ann@example.com", "password": PASSWORD}).status_code == 200
    )
    audio = wav_bytes(stereo_mix(1.0))
    csrf = log_in(site, "boss@example.com")
    ann = user_id(site, "ann@example.com")
    r = site.client.post(f"/admin/users/{ann}/disabled", data={"csrf_token": csrf, "value": "on"})
    assert "ann@example.com is disabled." in r.text
    assert refused(site, token)
    assert site.create(token, audio)["status"] == 401
    r = site.client.post("/api/app/login", data={"email": "ann@example.com", "password": PASSWORD})
    assert (
        r.status_code == 400
        and r.json()["data"]["message"] == "This account is disabled; ask the server's administrator."
    )
    r = site.client.post("/api/app/login", data={"email": "ann@example.com", "password": "wrong password"})
    assert "disabled" not in r.text  # only whoever knows the password learns it
    # enabled again: everything works, with the same token
    r = site.client.post(f"/admin/users/{ann}/disabled", data={"csrf_token": csrf, "value": "off"})
    assert "ann@example.com is enabled." in r.text
    assert api_user(site, token).status_code == 200 and site.create(token, audio)["status"] == 200
    # an admin cannot lock themselves out
    r = site.client.post(
        f"/admin/users/{user_id(site, 'boss@example.com')}/disabled", data={"csrf_token": csrf, "value": "on"}
    )
    assert r.status_code == 409 and "your own account" in r.text


def test_disabling_ends_the_accounts_web_session(site):
    site.user("ann@example.com")
    log_in(site, "ann@example.com")
    assert site.client.get("/account").status_code == 200
    site.ctx.accounts.set_disabled(user_id(site, "ann@example.com"), True)
    r = site.client.get("/account", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    csrf = csrf_of(site.client.get("/login").text)
    r = site.client.post("/login", data={"csrf_token": csrf, "email": "ann@example.com", "password": PASSWORD})
    assert r.status_code == 400 and "This account is disabled" in r.text


# ------------------------------------------------------------------------------------------------ the service


@pytest.fixture(params=["sqlite", "postgresql"])
def harness_on(request, tmp_path):
    """A Harness on SQLite, and on a fresh PostgreSQL database (skipped where there is none)."""
    if request.param == "sqlite":
        h = Harness(make_settings(tmp_path))
        yield h
        h.close()
        return
    with postgres_database() as url:
        h = Harness(make_settings(tmp_path, database_url=url))
        yield h
        h.close()


def test_account_service_admin_rules(harness_on):
    h = harness_on
    accounts = h.ctx.accounts
    token = h.user("ann@example.com", credits=10)
    h.user("ann_b@example.com")
    ann = user_id(h, "ann@example.com")
    assert accounts.grant(ann, 5).credits == 15
    with pytest.raises(ValidationFailed, match="cannot lose 16"):
        accounts.grant(ann, -16)
    with pytest.raises(ValidationFailed):
        accounts.grant(ann, h.settings.admin_max_credit_grant + 1)
    with pytest.raises(NotFound):
        accounts.grant(99999, 5)
    with pytest.raises(ServiceError, match="own account"):
        accounts.set_disabled(ann, True, by=ann)
    assert accounts.find(ann).credits == 15
    with pytest.raises(NotFound):
        accounts.set_admin("nobody@example.com", True)
    assert [u.email for u in accounts.search("ANN_", 1, 10).users] == ["ann_b@example.com"]  # _ is no wildcard
    assert accounts.search("", 5, 1).page == 2  # past the end: the last page
    accounts.set_disabled(ann, True)
    with pytest.raises(InvalidToken):
        accounts.require(token)
    assert accounts.signed_in(ann) is None
    accounts.set_disabled(ann, False)
    assert accounts.require(token).id == ann


def test_cli_makes_and_unmakes_admins(tmp_path):
    env = {"OPENMVSEP_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    assert runner.invoke(cli_app, ["db", "upgrade"], env=env).exit_code == 0
    args = ["user", "create", "--email", "root@example.com", "--password", PASSWORD, "--admin"]
    assert runner.invoke(cli_app, args, env=env).exit_code == 0
    args = ["user", "create", "--email", "ann@example.com", "--password", PASSWORD]
    assert runner.invoke(cli_app, args, env=env).exit_code == 0

    def admins() -> set[str]:
        h = Harness(make_settings(tmp_path))
        try:
            return {u.email for u in h.ctx.accounts.all() if u.is_admin}
        finally:
            h.close()

    assert admins() == {"root@example.com"}
    result = runner.invoke(cli_app, ["user", "admin", "ann@example.com"], env=env)
    assert result.exit_code == 0 and "is an admin" in result.output
    assert admins() == {"root@example.com", "ann@example.com"}
    assert runner.invoke(cli_app, ["user", "admin", "root@example.com", "--revoke"], env=env).exit_code == 0
    assert admins() == {"ann@example.com"}
    result = runner.invoke(cli_app, ["user", "admin", "nobody@example.com"], env=env)
    assert result.exit_code == 1 and "There is no account" in result.output


# ------------------------------------------------------------------------------------------------ weights


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def files_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Files
    httpd.shutdown()


class _Slow(http.server.BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"ab")
        self.wfile.flush()
        type(self).release.wait(20)
        self.wfile.write(b"cd")

    def log_message(self, *args):
        pass


def register_weights(data_dir: Path, entries: list[dict]) -> None:
    (data_dir / "weights").mkdir(parents=True, exist_ok=True)
    (data_dir / "models.yaml").write_text(yaml.safe_dump(entries))


def wait_for_tasks(h: Harness, running: int = 0, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        html = h.client.get("/admin/models/tasks").text
        if f'data-running="{running}"' in html:
            return html
        time.sleep(0.05)
    raise AssertionError(html)


def test_weights_are_listed_downloaded_and_verified_in_the_background(site, files_server, tmp_path):
    url, handler = files_server
    body = b"tiny weights " * 1000
    handler.files = {"/tiny.bin": body}
    data = Path(site.settings.data_dir)
    digest = hashlib.sha256(body).hexdigest()
    entry = {"model_type": "bs_roformer", "serves": ["47:0"], "licence": "MIT"}
    register_weights(
        data,
        [
            {**entry, "name": "tiny", "filename": "tiny.bin", "urls": [f"{url}/tiny.bin"], "sha256": digest},
            {**entry, "name": "gone", "filename": "gone.bin", "urls": [f"{url}/gone.bin"]},
        ],
    )
    make_admin(site)
    csrf = log_in(site, "boss@example.com")
    page = site.client.get("/admin/models").text
    assert 'data-entry="tiny" data-present="no"' in page and 'data-entry="gone" data-present="no"' in page
    assert "MIT" in page and 'hx-post="/admin/models/download"' in page
    assert 'data-entry="htdemucs"' in page or "data-entry=" in page  # the shipped registry is listed too

    r = site.client.post(
        "/admin/models/download", data={"csrf_token": csrf, "name": "tiny"}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 200 and r.text.startswith('<section id="weight-tasks"')
    html = wait_for_tasks(site)
    assert 'data-task="tiny" data-action="download" data-state="done"' in html and "verified" in html
    assert (data / "weights" / "tiny.bin").read_bytes() == body
    assert 'data-entry="tiny" data-present="yes"' in site.client.get("/admin/models").text

    r = site.client.post("/admin/models/verify", data={"csrf_token": csrf, "name": "tiny"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/models"  # a form without htmx
    html = wait_for_tasks(site)
    assert 'data-action="verify" data-state="done"' in html and digest in html

    (data / "weights" / "tiny.bin").write_bytes(b"x" * len(body))  # corrupted on disk
    site.client.post("/admin/models/verify", data={"csrf_token": csrf, "name": "tiny"})
    html = wait_for_tasks(site)
    assert 'data-action="verify" data-state="failed"' in html and "does not match its sha256" in html

    site.client.post("/admin/models/download", data={"csrf_token": csrf, "name": "gone"})
    html = wait_for_tasks(site)
    assert 'data-task="gone" data-action="download" data-state="failed"' in html and "404" in html

    r = site.client.post("/admin/models/download", data={"csrf_token": csrf, "name": "nope"})
    assert r.status_code == 404 and "no weights named" in r.text
    r = site.client.post(
        "/admin/models/download", data={"csrf_token": csrf, "name": "nope"}, headers={"HX-Request": "true"}
    )
    assert 'role="alert"' in r.text and "no weights named" in r.text
    assert site.client.post("/admin/models/delete", data={"csrf_token": csrf, "name": "tiny"}).status_code == 400


# ------------------------------------------------------------------------------------------------ queue


def test_queue_shows_work_by_plan_and_busy_workers(site):
    make_admin(site)
    log_in(site, "boss@example.com")
    audio = wav_bytes(stereo_mix(1.0))
    for name in ("ann", "bob", "cat"):  # one job each: an account may have only so many waiting
        r = site.create(site.user(f"{name}@example.com"), audio)
        assert r["status"] == 200, r
    html = site.client.get("/admin/queue/live").text
    assert 'hx-trigger="every 2.0s"' in html
    assert re.search(r'data-plan="registered">.*?<td data-waiting>3</td>.*?<td data-running>0</td>', html, re.S)
    assert "No worker holds work right now." in html
    claim = lifecycle.claim_next(site.ctx.db, "gpu-box-1", site.settings.lease_seconds)
    assert claim is not None
    html = site.client.get("/admin/queue").text
    assert re.search(r'data-plan="registered">.*?<td data-waiting>2</td>.*?<td data-running>1</td>', html, re.S)
    assert re.search(r'data-worker="gpu-box-1"><th scope="row">gpu-box-1</th><td>\d+ s ago</td>', html)


def test_weight_tasks_are_one_per_entry_and_bounded(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    _Slow.release.clear()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    h = Harness(make_settings(tmp_path, admin_max_weight_tasks=2, weights_recheck_seconds=0))
    try:
        entry = {"model_type": "bs_roformer", "serves": [], "urls": [f"{url}/w.bin"]}
        register_weights(
            Path(h.settings.data_dir),
            [{**entry, "name": name, "filename": f"{name}.bin"} for name in ("one", "two", "three")],
        )
        admin = h.ctx.weights_admin
        admin.rows()  # reads the new registry file
        admin.start("one", "download")
        with pytest.raises(ServiceError, match="already has a task running") as busy:
            admin.start("one", "download")
        assert busy.value.status == 409
        admin.start("two", "download")
        with pytest.raises(ServiceError, match="the limit is 2") as full:
            admin.start("three", "verify")
        assert full.value.status == 429
        deadline = time.monotonic() + 10
        while not all(t.done_bytes == 2 for t in admin.tasks()):  # progress while the bytes arrive
            assert time.monotonic() < deadline, admin.tasks()
            time.sleep(0.02)
        assert {t.percent for t in admin.tasks()} == {50}
        _Slow.release.set()
        while any(t.state == "running" for t in admin.tasks()):
            assert time.monotonic() < deadline, admin.tasks()
            time.sleep(0.02)
        assert {(t.name, t.state) for t in admin.tasks()} == {("one", "done"), ("two", "done")}
        assert "not pinned" in admin.tasks()[0].message
        assert (Path(h.settings.data_dir) / "weights" / "one.bin").read_bytes() == b"abcd"
    finally:
        _Slow.release.set()
        httpd.shutdown()
        h.close()
