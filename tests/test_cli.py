"""The `openmvsep` command: accounts, news, database, settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from openmvsep.settings import Settings
from openmvsep.store.db import Database

BIN = Path(sys.executable).parent / "openmvsep"


def run(tmp_path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENMVSEP_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, check=check, timeout=60)


def test_db_upgrade_creates_schema(tmp_path):
    run(tmp_path, "db", "upgrade")
    db = Database(Settings(data_dir=tmp_path / "data").effective_database_url)
    assert {"users", "jobs", "work_items"} <= set(inspect(db.engine).get_table_names())
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


def test_admin_commands_refuse_a_data_dir_without_a_database(tmp_path):
    """Run from the wrong folder, an admin command must not make a second, empty database there."""
    for args in (
        ("user", "create", "--email", "a@example.com", "--password", "password123"),
        ("user", "list"),
        ("news", "add", "--title", "t", "--text", "x"),
        ("qc", "dataset", "list"),
    ):
        done = run(tmp_path, *args, check=False)
        assert done.returncode == 1, args
        assert f"data directory: {(tmp_path / 'data').resolve()}" in done.stderr
        assert "no openmvsep database" in done.stderr and "OPENMVSEP_DATA_DIR" in done.stderr
    assert not (tmp_path / "data" / "openmvsep.db").exists()


def test_user_create_prints_token_last_and_list_shows_it(tmp_path):
    run(tmp_path, "db", "upgrade")
    out = run(
        tmp_path,
        "user",
        "create",
        "--email",
        "a@example.com",
        "--password",
        "password123",
        "--name",
        "Ann",
        "--premium",
        "--credits",
        "42",
    ).stdout
    token = out.strip().splitlines()[-1]
    assert len(token) == 30 and token.isalnum()
    listed = run(tmp_path, "user", "list").stdout
    assert "a@example.com" in listed and "42" in listed
    dup = run(tmp_path, "user", "create", "--email", "a@example.com", "--password", "password123", check=False)
    assert dup.returncode == 1 and "already been taken" in dup.stderr


def test_news_add_is_served(tmp_path):
    run(tmp_path, "db", "upgrade")
    run(tmp_path, "news", "add", "--title", "Hello", "--text", "<p>First</p>", "--lang", "en")
    from fastapi.testclient import TestClient

    from openmvsep.api.app import create_app
    from openmvsep.bootstrap import Services

    with TestClient(create_app(Services(Settings(data_dir=tmp_path / "data", workers=0)))) as client:
        news = client.get("/api/app/news", params={"lang": "en"}).json()
    assert [(n["title"], n["text"], n["status"]) for n in news] == [("Hello", "<p>First</p>", 1)]


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENMVSEP_PORT", "9123")
    monkeypatch.setenv("OPENMVSEP_WORKERS", "3")
    monkeypatch.setenv("OPENMVSEP_PUBLIC_URL", "https://sep.example.org/")
    s = Settings()
    assert (s.port, s.workers, s.effective_public_url) == (9123, 3, "https://sep.example.org")
    assert Settings(data_dir=tmp_path).effective_database_url.startswith("sqlite:///")


def test_migrations_match_the_models(tmp_path):
    """A schema change without a migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from openmvsep.store.migrate import upgrade
    from openmvsep.store.models import Base

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    db = Database(url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []
