"""Password verification holds no write lock: while a login's argon2 runs, other connections write at once.

On SQLite a write transaction holds the database's one write lock; argon2 inside one (about 0.1 s each) made a
flood of wrong-password logins stall every job create and worker claim. Here the verification is held open by
a hook until another connection has written (or for HELD seconds): with the lock held, the write could only
finish after HELD; without it, at once. No timing luck: the bound is far below HELD either way.
"""

from __future__ import annotations

import contextlib
import threading
import time

from argon2 import PasswordHasher

from openmvsep.service.errors import ServiceError

from conftest import stereo_mix, wav_bytes

HELD = 20.0  # how long a verification waits for the concurrent write before going on
BOUND = 5.0  # the concurrent write must finish well within this


def _held_verification(monkeypatch) -> tuple[threading.Event, threading.Event]:
    verifying, written = threading.Event(), threading.Event()
    real = PasswordHasher.verify

    def held(self, hash_, password):  # the real verification, started only once the other write is done
        verifying.set()
        written.wait(HELD)
        return real(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", held)
    return verifying, written


def _write_during(verifying: threading.Event, written: threading.Event, background, write) -> float:
    """Runs `background` (which verifies a password) in a thread, and `write` while it verifies: the seconds
    `write` took."""

    def run():
        with contextlib.suppress(ServiceError):  # the wrong password's refusal is expected
            background()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert verifying.wait(10), "the password was never verified"
        start = time.monotonic()
        write()
        return time.monotonic() - start
    finally:
        written.set()
        thread.join(HELD + 10)


def test_a_job_is_created_while_a_login_verifies_its_password(harness, monkeypatch):
    token = harness.user("known@example.com")
    song = wav_bytes(stereo_mix(1.0))
    verifying, written = _held_verification(monkeypatch)
    created: dict = {}
    took = _write_during(
        verifying,
        written,
        lambda: harness.ctx.accounts.login("known@example.com", "wrong-password"),
        lambda: created.update(harness.create(token, song)),
    )
    assert created["success"] is True, created
    assert took < BOUND, f"job create waited {took:.1f} s for a login's password verification"


def test_a_worker_claims_while_a_registration_hashes_its_password(harness, monkeypatch):
    """Register hashes before its insert: a claim (a write) goes through while the hash is computed."""
    from argon2 import PasswordHasher as Hasher

    from openmvsep.service import lifecycle

    token = harness.user("known@example.com")
    assert harness.create(token, wav_bytes(stereo_mix(1.0)))["success"] is True
    verifying, written = threading.Event(), threading.Event()
    real = Hasher.hash

    def held(self, password, *args, **kwargs):
        verifying.set()
        written.wait(HELD)
        return real(self, password, *args, **kwargs)

    monkeypatch.setattr(Hasher, "hash", held)
    claims: list = []
    took = _write_during(
        verifying,
        written,
        lambda: harness.ctx.accounts.register(
            email="new@example.com", password="a long passphrase", name="New", confirmation=None
        ),
        lambda: claims.append(lifecycle.claim_next(harness.ctx.db, "w1", 30)),
    )
    assert claims[0] is not None
    assert took < BOUND, f"a worker's claim waited {took:.1f} s for a registration's password hashing"


def test_a_job_is_created_while_a_quality_checker_delete_verifies_its_password(harness, monkeypatch, tmp_path):
    from openmvsep.quality.synth import synthesize_dataset
    from openmvsep.service import accounts
    from openmvsep.store.db import utcnow
    from openmvsep.store.models import QcEntry

    dataset = harness.ctx.quality.register_dataset(synthesize_dataset(tmp_path / "synth", tracks=1, seconds=1.0))
    token = harness.user("known@example.com")
    with harness.ctx.db.session() as s:
        entry = QcEntry(
            dataset_type=dataset.dataset_type,
            algo_name="a",
            main_text="",
            ensemble=False,
            password_hash=accounts.hash_password("entry-password"),
            stems=["vocals"],
            status="done",
            msg="OK",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        s.add(entry)
        s.flush()
        entry_id = str(entry.id)
    song = wav_bytes(stereo_mix(1.0))
    verifying, written = _held_verification(monkeypatch)
    created: dict = {}
    took = _write_during(
        verifying,
        written,
        lambda: harness.ctx.quality.delete(entry_id, "wrong-password"),
        lambda: created.update(harness.create(token, song)),
    )
    assert created["success"] is True, created
    assert took < BOUND, f"job create waited {took:.1f} s for a Quality Checker password verification"
