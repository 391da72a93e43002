"""Migrations applied to databases that already hold data: rows and ids survive."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from openmvsep.store.db import make_engine
from openmvsep.store.migrate import upgrade

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
