"""app/register follows the registration policy (open, verify, invite, closed), limits accounts per client address,
refuses weak passwords, and never says an e-mail was sent when none was. Verification mails go through a real
SMTP server (aiosmtpd) in this process."""

from __future__ import annotations

import re
import socket
from email import message_from_bytes
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from openmvsep.store.models import User

from conftest import Harness

PASSWORD = "a long passphrase"


def _register(h: Harness, email: str, password: str = PASSWORD, name: str = "Ann"):
    form = {"name": name, "email": email, "password": password, "password_confirmation": password}
    return h.client.post("/api/app/register", data=form)


def _accounts(h: Harness) -> int:
    with h.ctx.db.reader() as s:
        return s.scalar(select(func.count()).select_from(User)) or 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """An aiosmtpd handler keeping every mail it accepts."""

    def __init__(self):
        self.mails: list = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.mark.parametrize("overrides", [{"registration": "closed"}, {"registration_open": False}])
def test_a_closed_server_refuses_registration(make_harness, overrides):
    h = make_harness(**overrides)
    r = _register(h, "ann@example.com")
    assert r.status_code == 403 and r.json()["data"]["message"] == "Registration is closed on this server"
    assert _accounts(h) == 0


def test_an_open_server_says_the_account_is_ready_not_that_a_mail_was_sent(make_harness):
    h = make_harness(registration="open")
    r = _register(h, "ann@example.com")
    assert r.json() == {"success": True, "message": "Account created for ann@example.com; you can log in now"}
    assert h.client.post("/api/app/login", data={"email": "ann@example.com", "password": PASSWORD}).status_code == 200


def test_one_address_registers_a_limited_number_of_accounts_a_day(make_harness):
    h = make_harness(registrations_per_address_per_day=2)
    assert [_register(h, f"u{i}@example.com").status_code for i in range(2)] == [200, 200]
    r = _register(h, "u2@example.com")
    assert r.status_code == 429 and "Too many accounts registered from your address" in r.json()["data"]["message"]
    assert _accounts(h) == 2


@pytest.mark.parametrize(
    ("password", "why", "min_length"),
    [
        ("12345678", "one of the most common passwords", 8),
        ("Password1", "one of the most common passwords", 8),
        ("        ", "spaces only", 8),
        ("aaaaaaaaaaaa", "one of the most common passwords", 8),  # one character repeated
        ("short-pw", "at least 10 characters", 10),
    ],
)
def test_weak_passwords_are_refused(make_harness, password, why, min_length):
    h = make_harness(password_min_length=min_length)
    r = _register(h, "ann@example.com", password=password)
    assert r.status_code == 400 and why in r.json()["message"]["password"][0]
    assert _accounts(h) == 0


def test_invite_only_lets_invited_addresses_register(make_harness):
    h = make_harness(registration="invite")
    r = _register(h, "ann@example.com")
    assert r.status_code == 400 and "invitation only" in r.json()["message"]["email"][0]
    assert _accounts(h) == 0
    h.ctx.accounts.invite("Ann@Example.com")  # what `openmvsep user invite` does
    assert _register(h, "ann@example.com").json()["success"] is True


def test_verification_mail_is_sent_and_the_account_works_only_after_its_link(make_harness, smtp):
    port, inbox = smtp
    h = make_harness(registration="verify", smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    r = _register(h, "ann@example.com")
    assert r.json() == {"success": True, "message": "Account verification email sent to ann@example.com"}
    [(to, mail)] = inbox.mails
    assert to == ["ann@example.com"] and mail["Subject"] == "Verify your e-mail address"
    link = re.search(r"http://testserver/api/app/verify_email\?token=\S+", mail.get_payload(decode=True).decode())
    assert link is not None
    # not yet: no login, and the account's token does not work
    refused = h.client.post("/api/app/login", data={"email": "ann@example.com", "password": PASSWORD})
    assert refused.status_code == 400 and "not verified" in refused.json()["message"]["email"][0]
    with h.ctx.db.reader() as s:
        token = s.scalar(select(User.api_token))
    assert h.client.get("/api/app/user", params={"api_token": token}).status_code == 400
    parts = urlsplit(link.group(0))
    opened = h.client.get(f"{parts.path}?{parts.query}")
    assert opened.status_code == 200 and opened.json()["success"] is True
    assert h.client.get(f"{parts.path}?{parts.query}").status_code == 404  # used once
    ok = h.client.post("/api/app/login", data={"email": "ann@example.com", "password": PASSWORD})
    assert ok.status_code == 200 and ok.json()["data"]["api_token"] == token
    assert h.client.get("/api/app/user", params={"api_token": token}).status_code == 200


def test_a_mail_that_cannot_be_sent_leaves_no_account_and_says_so(make_harness):
    h = make_harness(registration="verify", smtp_host="127.0.0.1", smtp_port=_free_port(), smtp_security="none")
    r = _register(h, "ann@example.com")
    assert r.status_code == 503 and "could not be sent" in r.json()["data"]["message"]
    assert _accounts(h) == 0


def test_verify_without_a_mail_server_refuses_instead_of_pretending(make_harness):
    h = make_harness(registration="verify")
    r = _register(h, "ann@example.com")
    assert r.status_code == 503 and "no mail server" in r.json()["data"]["message"]
    assert _accounts(h) == 0
