"""The same migrations and job lifecycle on the PostgreSQL server of this machine."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import inspect, select

from conftest import Harness, make_settings, stereo_mix, wav_bytes
from openmvsep.runner import queue
from openmvsep.store.models import CreditEntry

PG_ADMIN = os.environ.get("OPENMVSEP_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432/postgres")
pytestmark = pytest.mark.skipif(os.environ.get("OPENMVSEP_SKIP_POSTGRES") == "1", reason="PostgreSQL tests disabled")


@pytest.fixture
def pg_url():
    import psycopg

    name = f"openmvsep_test_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_and_job_lifecycle_on_postgres(tmp_path, pg_url):
    h = Harness(make_settings(tmp_path, database_url=pg_url, chunk_threshold_seconds=2, chunk_seconds=1,
                              chunk_overlap_seconds=0.1))
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
        claim = queue.claim_next(h.ctx.db, "lost", 30)
        queue.release_lost_work(h.ctx.db, 3, workers=["lost"])
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
