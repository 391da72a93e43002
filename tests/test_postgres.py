"""The same migrations and job lifecycle on the PostgreSQL server of this machine."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import inspect, select

from openmvsep.service import lifecycle
from openmvsep.store.models import CreditEntry

from conftest import Harness, make_settings, stereo_mix, wav_bytes
from processes import postgres_database


@pytest.fixture
def pg_url():
    with postgres_database() as url:
        yield url


def test_migrations_and_job_lifecycle_on_postgres(tmp_path, pg_url):
    h = Harness(
        make_settings(
            tmp_path, database_url=pg_url, chunk_threshold_seconds=2, chunk_seconds=1, chunk_overlap_seconds=0.1
        )
    )
    try:
        assert h.ctx.db.engine.dialect.name == "postgresql"
        tables = set(inspect(h.ctx.db.engine).get_table_names())
        assert {"users", "jobs", "work_items", "remote_jobs", "credit_ledger", "news", "alembic_version"} <= tables
        token = h.user(credits=10, premium=True)
        free = h.user("free@example.com")
        # a premium job that is cancelled and refunded
        cancelled = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
        assert h.client.post("/api/separation/cancel", data={"api_token": token, "hash": cancelled}).json()["success"]
        # a free job queued behind a premium one, a chunked premium job
        f = h.create(free, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
        p = h.create(token, wav_bytes(stereo_mix(3.5)))["data"]["hash"]
        assert h.get(p)["data"]["current_order"] == 1 and h.get(f)["data"]["current_order"] == 2
        assert h.create(free, wav_bytes(stereo_mix(1.0)))["status"] == 400
        claim = lifecycle.claim_next(h.ctx.db, "lost", 30)
        lifecycle.release_lost_work(h.ctx.db, 3, workers=["lost"])
        assert claim.kind == "chunk"
        h.run_all()
        assert h.get(f)["status"] == "done"
        done = h.get(p)
        assert done["status"] == "done" and len(done["data"]["files"]) == 2
        with h.ctx.db.reader() as s:
            deltas = [e.delta for e in s.scalars(select(CreditEntry).order_by(CreditEntry.id))]
        assert deltas == [10, -1, 1, -1]
        history = h.client.get("/api/app/separation_history", params={"api_token": token}).json()["data"]
        assert [i["job_exists"] for i in history] == [True, False]
    finally:
        h.close()
        h.ctx.db.dispose()


def test_last_two_chunks_finishing_at_once_queue_exactly_one_merge(tmp_path, pg_url):
    """Workers on two machines finish a job's last two chunks at the same moment: whichever commits second
    must see the other's chunk, or the merge is never queued."""
    import threading

    from openmvsep.store.models import Job, WorkItem

    h = Harness(
        make_settings(
            tmp_path, database_url=pg_url, chunk_threshold_seconds=1, chunk_seconds=1, chunk_overlap_seconds=0.1
        )
    )
    try:
        token = h.user(credits=10, premium=True)
        hash_value = h.create(token, wav_bytes(stereo_mix(1.8)))["data"]["hash"]
        first, second = lifecycle.claim_next(h.ctx.db, "a", 60), lifecycle.claim_next(h.ctx.db, "b", 60)
        assert (first.kind, second.kind) == ("chunk", "chunk") and first.job_id == second.job_id
        first_holds_lock, second_done = threading.Event(), threading.Event()

        def finish(claim, before_commit=None):
            with h.ctx.db.session() as s:
                lifecycle.finish_item(s, lifecycle.lock_item(s, claim.id))
                if before_commit:
                    before_commit()

        def hold_then_commit():
            first_holds_lock.set()
            second_done.wait(1.0)  # the second finisher is blocked on the job row meanwhile

        a = threading.Thread(target=finish, args=(first, hold_then_commit))
        a.start()
        first_holds_lock.wait()
        b = threading.Thread(target=lambda: (finish(second), second_done.set()))
        b.start()
        a.join()
        b.join()
        with h.ctx.db.reader() as s:
            job = s.scalars(select(Job).where(Job.hash == hash_value)).one()
            merges = s.scalars(select(WorkItem).where(WorkItem.job_id == job.id, WorkItem.kind == "merge")).all()
        assert job.all_chunks == 2 and job.finished_chunks == 2 and job.status == "merging"
        assert len(merges) == 1
    finally:
        h.close()


def test_concurrent_upgrades_of_a_fresh_database_all_succeed(pg_url):
    """API processes started together each run the migrations on start; they must not trip over each other."""
    import subprocess
    import sys
    from pathlib import Path

    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, text

    from openmvsep.store.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(pg_url)).get_current_head()
    cli = str(Path(sys.executable).parent / "openmvsep")
    env = {**os.environ, "OPENMVSEP_DATABASE_URL": pg_url}
    procs = [
        subprocess.Popen([cli, "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(3)
    ]
    outputs = [(p.wait(timeout=120), p.stdout.read()) for p in procs]
    assert all(code == 0 for code, _ in outputs), outputs
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
    engine.dispose()


def test_webhook_outbox_claims_once_on_postgres(tmp_path, pg_url):
    """Two senders (as in two API processes) never hold one event; the job's end wrote it."""
    from openmvsep.service import webhooks
    from openmvsep.store.models import WebhookEvent

    h = Harness(make_settings(tmp_path, database_url=pg_url, webhook_senders=0))
    try:
        token = h.user()
        h.create(token, wav_bytes(stereo_mix(1.0)), webhook_url="https://receiver.invalid/hook")
        h.run_all()
        first = webhooks.claim_due(h.ctx.db, "api-1", lease_seconds=60, max_attempts=3)
        assert first is not None and first.event_type == "separation.done"
        assert webhooks.claim_due(h.ctx.db, "api-2", lease_seconds=60, max_attempts=3) is None
        webhooks.record_delivered(h.ctx.db, first, "api-1", {"hash": first.job_hash}, 204)
        with h.ctx.db.reader() as s:
            event = s.scalars(select(WebhookEvent)).one()
        assert event.status == "delivered" and event.last_status == 204 and event.attempts == 1
    finally:
        h.close()
