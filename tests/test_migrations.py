"""Migrations applied to databases that already hold data: rows and ids survive."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

from openmvsep.store.db import make_engine
from openmvsep.store.migrate import alembic_config, upgrade

from processes import postgres_database

NOW = "2026-01-01 00:00:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
    else:
        with postgres_database() as url:
            yield url


def _entry_values(entry_id: int) -> dict:
    return {"id": entry_id, "name": f"model {entry_id}", "now": NOW}


def test_quality_entries_keep_their_ids_and_scores_and_ids_never_repeat_after_upgrade(database_url):
    """A database at 0002 with entries (ids 1, 2 and 5: 3 and 4 were deleted) and their scores upgrades to head:
    every row and id stays, and from then on a deleted newest entry's id is never handed out again."""
    upgrade(database_url, "0002")
    engine = make_engine(database_url)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO users (id, name, email, password_hash, api_token, credits, premium_enabled, "
                "long_filenames_enabled, is_admin, credit_alert_threshold, created_at, updated_at) "
                "VALUES (1, 'u', 'u@example.com', 'x', 'token', 0, false, false, false, 0, :now, :now)"
            ),
            {"now": NOW},
        )
        c.execute(
            text(
                "INSERT INTO qc_datasets (dataset_type, slug, name, description, stems, sample_rate, songs, root, "
                "mixtures_key, created_at) VALUES (0, 'synth', 'Synthetic', '', '[\"vocals\"]', 44100, '[]', '/x', "
                "'public/synth.zip', :now)"
            ),
            {"now": NOW},
        )
        for entry_id in (1, 2, 5):
            c.execute(
                text(
                    "INSERT INTO qc_entries (id, dataset_type, user_id, algo_name, main_text, ensemble, stems, "
                    "status, msg, attempts, created_at, updated_at) "
                    "VALUES (:id, 0, 1, :name, '', false, '[\"vocals\"]', 'done', 'OK', 0, :now, :now)"
                ),
                _entry_values(entry_id),
            )
            c.execute(
                text("INSERT INTO qc_scores (entry_id, stem, metric, value) VALUES (:id, 'vocals', 'sdr', :v)"),
                {"id": entry_id, "v": entry_id + 0.5},
            )
        if c.dialect.name == "postgresql":  # as the rows would have been made: by the sequence
            c.execute(text("SELECT setval('qc_entries_id_seq', 5)"))
    engine.dispose()

    upgrade(database_url)

    engine = make_engine(database_url)
    try:
        with engine.begin() as c:
            rows = c.execute(text("SELECT id, algo_name FROM qc_entries ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(1, "model 1"), (2, "model 2"), (5, "model 5")]
            scores = c.execute(text("SELECT entry_id, value FROM qc_scores ORDER BY entry_id")).all()
            assert [tuple(r) for r in scores] == [(1, 1.5), (2, 2.5), (5, 5.5)]
            c.execute(text("DELETE FROM qc_entries WHERE id = 5"))
        with engine.begin() as c:
            new_id = c.execute(
                text(
                    "INSERT INTO qc_entries (dataset_type, user_id, algo_name, main_text, ensemble, stems, status, "
                    "msg, attempts, created_at, updated_at) "
                    "VALUES (0, 1, 'new', '', false, '[]', 'waiting', '', 0, :now, :now) RETURNING id"
                ),
                {"now": NOW},
            ).scalar_one()
        assert new_id == 6
    finally:
        engine.dispose()


def test_queued_webhook_events_survive_the_signed_webhooks_upgrade_and_back(database_url):
    """A database at 0008 with a job's pending webhook event upgrades to head: the event keeps its id and row, and
    learns its user (from its job) and when it was queued; an event of the new kinds can be written; the way back
    to 0008 keeps the job's event and drops what the old table cannot hold."""
    upgrade(database_url, "0008")
    engine = make_engine(database_url)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO users (id, name, email, password_hash, api_token, credits, premium_enabled, "
                "long_filenames_enabled, is_admin, credit_alert_threshold, created_at, updated_at) "
                "VALUES (7, 'u', 'u@example.com', 'x', 'token', 0, false, false, false, 0, :now, :now)"
            ),
            {"now": NOW},
        )
        c.execute(
            text(
                "INSERT INTO jobs (id, hash, user_id, plan, sep_type, options, output_format, is_demo, long_filenames, "
                "status, inputs, duration, credits_charged, all_chunks, finished_chunks, webhook_url, files_deleted, "
                "created_at, updated_at, expires_at) VALUES (3, 'h3', 7, 1, 55, '{}', 0, false, false, 'done', '{}', "
                "1.0, 0, 1, 0, 'https://receiver.example/hook', false, :now, :now, :now)"
            ),
            {"now": NOW},
        )
        c.execute(
            text(
                "INSERT INTO webhook_events (id, event_id, event_type, job_id, url, status, next_attempt_at, "
                "attempts, created_at, updated_at) VALUES (11, 'evt_old', 'separation.done', 3, "
                "'https://receiver.example/hook', 'pending', :now, 2, :now, :now)"
            ),
            {"now": NOW},
        )
    engine.dispose()

    upgrade(database_url)

    engine = make_engine(database_url)
    try:
        with engine.begin() as c:
            row = c.execute(
                text("SELECT id, event_id, job_id, user_id, endpoint_id, attempts, queued_at FROM webhook_events")
            ).one()
            assert tuple(row[:6]) == (11, "evt_old", 3, 7, None, 2) and row.queued_at is not None
            c.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, user_id, url, event_types, disabled, created_at, updated_at, "
                    "secret) VALUES (1, 7, 'https://receiver.example/e', NULL, false, :now, :now, 'whsec_x')"
                ),
                {"now": NOW},
            )
            c.execute(
                text(
                    "INSERT INTO webhook_events (id, event_id, event_type, user_id, endpoint_id, url, status, "
                    "next_attempt_at, attempts, created_at, updated_at) VALUES (12, 'evt_test', 'webhook.test', 7, 1, "
                    "'https://receiver.example/e', 'pending', :now, 0, :now, :now)"
                ),
                {"now": NOW},
            )
            c.execute(
                text(
                    "INSERT INTO webhook_attempts (webhook_event_id, attempt, url, started_at, error) "
                    "VALUES (11, 1, 'https://receiver.example/hook', :now, 'refused')"
                ),
                {"now": NOW},
            )
    finally:
        engine.dispose()

    command.downgrade(alembic_config(database_url), "0008")
    engine = make_engine(database_url)
    try:
        with engine.begin() as c:
            assert c.execute(text("SELECT id, event_id, job_id FROM webhook_events")).all() == [(11, "evt_old", 3)]
    finally:
        engine.dispose()
