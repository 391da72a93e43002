"""Login answers an unknown address as slowly as a wrong password: the timing tells nothing of who has an account."""

from __future__ import annotations

from argon2 import PasswordHasher

from openmvsep.service import accounts


def test_an_unknown_address_costs_one_password_verification(harness, monkeypatch):
    harness.user("known@example.com")
    calls: list[str] = []
    real = PasswordHasher.verify

    def counted(self, hash_, password):  # the real verification, counted
        calls.append(hash_)
        return real(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    for email in ("known@example.com", "nobody@example.com"):
        r = harness.client.post("/api/app/login", data={"email": email, "password": "wrong-password"})
        assert r.status_code == 422 or r.json()["success"] is False
    assert len(calls) == 2, "an unknown address must be verified against a hash too"
    assert calls[1] == accounts._dummy_hash()  # same parameters as a real one: the same cost
    assert PasswordHasher().check_needs_rehash(calls[1]) is False
