"""Failed logins are throttled per account and per client address, in the database every API process shares."""

from __future__ import annotations

from conftest import Harness, make_settings


def _login(h: Harness, email: str, password: str):
    return h.client.post("/api/app/login", data={"email": email, "password": password})


def test_an_account_is_blocked_after_its_failures_and_told_when_to_retry(make_harness):
    h = make_harness(login_account_failures=3, login_address_failures=0, login_backoff_seconds=60)
    h.user("ann@example.com")
    for _ in range(3):
        assert _login(h, "ann@example.com", "wrong-password").status_code == 400
    blocked = _login(h, "ann@example.com", "password123")  # even the right password waits
    assert blocked.status_code == 429
    assert 55 <= int(blocked.headers["Retry-After"]) <= 60
    body = blocked.json()
    assert body["success"] is False and "Too many failed login attempts" in body["data"]["message"]
    # another account from the same address is not affected (the address limit is off here)
    h.user("bob@example.com")
    assert _login(h, "bob@example.com", "password123").status_code == 200


def test_the_wait_doubles_with_each_further_failure(make_harness):
    from sqlalchemy import select

    from openmvsep.store.models import LoginThrottle

    h = make_harness(login_account_failures=2, login_address_failures=0, login_backoff_seconds=0.0001)
    waits = []
    for _ in range(5):
        assert _login(h, "nobody@example.com", "wrong-password").status_code == 400  # each block is over at once
        with h.ctx.db.reader() as s:
            row = s.scalar(select(LoginThrottle))
            waits.append(None if row.blocked_until is None else (row.blocked_until - row.last_failure_at))
    assert waits[0] is None
    assert [w.total_seconds() for w in waits[1:]] == [0.0001, 0.0002, 0.0004, 0.0008]


def test_a_successful_login_clears_the_accounts_failures(make_harness):
    h = make_harness(login_account_failures=3, login_address_failures=0, login_backoff_seconds=60)
    h.user("ann@example.com")
    for _ in range(2):
        assert _login(h, "ann@example.com", "wrong-password").status_code == 400
    assert _login(h, "ann@example.com", "password123").status_code == 200
    # Counted from zero again: three more failures before a block (without the reset, the first would block).
    assert [_login(h, "ann@example.com", "wrong-password").status_code for _ in range(4)] == [400, 400, 400, 429]


def test_one_address_trying_many_accounts_is_blocked(make_harness):
    h = make_harness(login_account_failures=0, login_address_failures=4, login_backoff_seconds=60)
    h.user("ann@example.com")
    for i in range(4):
        assert _login(h, f"guess{i}@example.com", "wrong-password").status_code == 400
    assert _login(h, "ann@example.com", "password123").status_code == 429  # this address waits, whatever it tries


def test_every_api_process_sees_the_same_failures(tmp_path):
    """Two processes' services over one database: failures made through one block logins through the other."""
    settings = make_settings(tmp_path, login_account_failures=2, login_address_failures=0, login_backoff_seconds=60)
    one, two = Harness(settings), Harness(settings)
    try:
        one.user("ann@example.com")
        assert _login(one, "ann@example.com", "wrong-password").status_code == 400
        assert _login(two, "ann@example.com", "wrong-password").status_code == 400
        assert _login(one, "ann@example.com", "password123").status_code == 429
        assert _login(two, "ann@example.com", "password123").status_code == 429
    finally:
        one.close()
        two.close()
