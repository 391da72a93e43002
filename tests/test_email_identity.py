"""One address, one account: e-mails are normalised (NFKC, casefold) once, in the domain, on every database; control
characters are refused in e-mails and names; migration 0006 brings stored addresses to the normal form."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from openmvsep.store.db import Database
from openmvsep.store.migrate import upgrade
from openmvsep.store.models import User

from conftest import Harness, make_settings
from processes import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def h(request, tmp_path):
    if request.param == "sqlite":
        harness = Harness(make_settings(tmp_path))
        yield harness
        harness.close()
        return
    with postgres_database() as url:
        harness = Harness(make_settings(tmp_path, database_url=url))
        yield harness
        harness.close()
        harness.ctx.db.dispose()


def _register(h: Harness, email: str, name: str = "Éva", password: str = "a long passphrase"):
    form = {"name": name, "email": email, "password": password, "password_confirmation": password}
    return h.client.post("/api/app/register", data=form)


def _login(h: Harness, email: str, password: str = "a long passphrase"):
    return h.client.post("/api/app/login", data={"email": email, "password": password})


def test_a_non_ascii_address_logs_in_whatever_its_case_and_form(h):
    assert _register(h, "Éva@X.test").json()["success"] is True
    # capital É, small é, and é written as e + a combining accent (NFD): one address
    for typed in ("Éva@X.test", "éva@x.test", "ÉVA@X.TEST", "e\u0301va@x.test"):
        r = _login(h, typed)
        assert r.status_code == 200, (typed, r.text)
        assert r.json()["data"]["email"] == "éva@x.test"


def test_a_second_account_for_the_same_address_is_refused(h):
    assert _register(h, "Éva@x.test").json()["success"] is True
    for other in ("éva@x.test", "ÉVA@x.test", "e\u0301va@x.test", "Éva@ｘ.test"):  # the last: a fullwidth x
        r = _register(h, other)
        assert r.status_code == 400 and r.json()["message"] == {"email": ["The email has already been taken."]}
    with h.ctx.db.reader() as s:
        assert s.scalar(select(text("count(*)")).select_from(User)) == 1


@pytest.mark.parametrize("bad", ["ann\x00@x.test", "ann@x.test\x00", "an\x07n@x.test", "ann\u200b@x.test"])
def test_control_characters_in_an_email_are_refused(h, bad):
    r = _register(h, bad)
    assert r.status_code == 400
    assert r.json()["message"] == {"email": ["The email may not contain control characters."]}
    with h.ctx.db.reader() as s:
        assert s.scalar(select(User.id)) is None


@pytest.mark.parametrize("bad", ["Ann\x00", "A\x1bnn", "Ann\u202eevil", "A\nnn"])
def test_control_characters_in_a_name_are_refused(h, bad):
    r = _register(h, "ann@x.test", name=bad)
    assert r.status_code == 400
    assert r.json()["message"] == {"name": ["The name may not contain control characters."]}


def test_the_migration_normalises_stored_addresses(tmp_path):
    """Rows written before 0006: non-normal addresses are rewritten; two that collide keep the normal one's owner."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0002")
    db = Database(url)
    rows = [("Éva@X.test", "t1"), ("Bob@Example.com", "t2"), ("bob@example.com", "t3"), ("BOB@example.com", "t4")]
    with db.engine.begin() as conn:
        for email, token in rows:
            conn.execute(
                text(
                    "INSERT INTO users (name, email, password_hash, api_token, credits, premium_enabled,"
                    " long_filenames_enabled, is_admin, credit_alert_threshold, created_at, updated_at)"
                    " VALUES ('n', :e, 'h', :t, 0, 0, 0, 0, 0, '2026-01-01', '2026-01-01')"
                ),
                {"e": email, "t": token},
            )
    db.dispose()
    upgrade(url)
    db = Database(url)
    with db.reader() as s:
        stored = dict(s.execute(select(User.api_token, User.email)).all())
        assert all(s.scalars(select(User.email_verified)))  # accounts from before verification stay usable
    db.dispose()
    assert stored == {"t1": "éva@x.test", "t2": "Bob@Example.com", "t3": "bob@example.com", "t4": "BOB@example.com"}
