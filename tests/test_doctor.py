"""`openmvsep doctor` against real servers (SQLite, PostgreSQL, Redis, SeaweedFS, a Celery worker), /health, and
the deployment files under deploy/ read the way their tools would read them."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from openmvsep.cli import doctor
from openmvsep.settings import Settings

from conftest import Harness, make_settings, stereo_mix, wav_bytes
from processes import PG_ADMIN, CeleryWorkers, free_port, postgres_database

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
LOCAL_REDIS = "redis://127.0.0.1:6379/15"


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the machine's own OPENMVSEP_*/AWS_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENMVSEP_", "AWS_"))}
    return {**env, "OPENMVSEP_DATA_DIR": str(data_dir), **extra}


def run_doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "openmvsep"), "doctor", *args], env=env, capture_output=True, text=True, timeout=120
    )


def doctor_json(env: dict[str, str]) -> tuple[int, dict[str, dict]]:
    done = run_doctor(env, "--json")
    body = json.loads(done.stdout)
    assert body["ok"] is (done.returncode == 0), done.stdout
    return done.returncode, {c["name"]: c for c in body["checks"]}


def celery_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    celery = {
        "OPENMVSEP_EXECUTOR": "celery",
        "OPENMVSEP_BROKER_URL": LOCAL_REDIS,
        "OPENMVSEP_CELERY_QUEUE": f"doctor-{uuid.uuid4().hex[:10]}",
    }
    return clean_env(tmp_path / "data", **{**celery, **extra})


# ---------------------------------------------------------------- the embedded default


def test_embedded_default_is_healthy(tmp_path):
    env = clean_env(tmp_path / "data")
    subprocess.run([str(BIN / "openmvsep"), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    code, checks = doctor_json(env)
    assert code == 0
    assert [c for c in checks] == ["executor", "database", "storage", "workers", "waiting work", "gpus", "weights"]
    assert checks["executor"]["status"] == "ok" and checks["executor"]["detail"].startswith("local")
    assert checks["database"]["status"] == "ok"
    assert "sqlite" in checks["database"]["detail"] and "schema at head" in checks["database"]["detail"]
    assert checks["storage"]["status"] == "ok"
    assert checks["waiting work"] == {"name": "waiting work", "status": "ok", "detail": "0 piece(s) waiting"}
    assert "broker" not in checks  # the local executor has none
    # The probe key is gone again.
    probe_folder = tmp_path / "data" / "storage" / "doctor"
    assert not probe_folder.exists() or not any(probe_folder.iterdir())

    table = run_doctor(env)
    assert table.returncode == 0
    assert re.search(r"database\s.*ok", table.stdout) and re.search(r"storage\s.*ok", table.stdout)


def test_fresh_data_dir_warns_without_creating_the_database(tmp_path):
    env = clean_env(tmp_path / "data")
    code, checks = doctor_json(env)
    assert code == 0
    assert checks["database"]["status"] == "warn"
    assert "openmvsep db upgrade" in checks["database"]["detail"]
    assert not (tmp_path / "data" / "openmvsep.db").exists()


def test_schema_behind_warns_and_schema_ahead_fails(tmp_path):
    import sqlite3

    from openmvsep.store.migrate import upgrade

    settings = Settings(data_dir=tmp_path / "data")
    upgrade(settings.effective_database_url)
    path = tmp_path / "data" / "openmvsep.db"

    def stamp(revision: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))

    stamp("0001")  # the first migration: behind any later head
    behind, ready = doctor.check_database(settings, 3.0)
    assert behind.status == "warn" and ready
    assert "schema 0001" in behind.detail and "openmvsep db upgrade" in behind.detail
    stamp("9999_from_a_newer_release")
    ahead, _ = doctor.check_database(settings, 3.0)
    assert ahead.status == "fail" and "newer than this install" in ahead.detail


def test_waiting_work_counts_queued_jobs(tmp_path):
    h = Harness(make_settings(tmp_path))
    try:
        created = h.create(h.user(), wav_bytes(stereo_mix(1.0)))
        assert created["success"], created
        counted = doctor.check_waiting_work(h.settings, 3.0, tables_ready=True, workers=None)
        assert counted.status == "ok" and counted.detail == "1 piece(s) waiting"
        h.run_all()
        after = doctor.check_waiting_work(h.settings, 3.0, tables_ready=True, workers=None)
        assert after.detail == "0 piece(s) waiting"
    finally:
        h.close()


# ---------------------------------------------------------------- PostgreSQL


def test_missing_postgres_database_fails_and_says_so(tmp_path):
    url = PG_ADMIN.rsplit("/", 1)[0] + "/nonexistent_xyz"
    code, checks = doctor_json(clean_env(tmp_path / "data", OPENMVSEP_DATABASE_URL=url))
    assert code == 1
    assert checks["database"]["status"] == "fail"
    detail = checks["database"]["detail"]
    assert "nonexistent_xyz" in detail and "OPENMVSEP_DATABASE_URL" in detail
    assert [name for name, c in checks.items() if c["status"] == "fail"] == ["database"]


def test_postgres_schema_behind_then_at_head(tmp_path):
    with postgres_database() as url:
        env = clean_env(tmp_path / "data", OPENMVSEP_DATABASE_URL=url)
        code, checks = doctor_json(env)
        assert code == 0 and checks["database"]["status"] == "warn"
        assert "no schema yet" in checks["database"]["detail"]
        subprocess.run([str(BIN / "openmvsep"), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
        database, ready = doctor.check_database(Settings(data_dir=tmp_path / "data", database_url=url), 3.0)
        assert ready and database.status == "ok", database
        assert database.detail.startswith("postgresql at postgresql+psycopg://") and "schema at head" in database.detail


# ---------------------------------------------------------------- Celery broker and workers


def test_celery_with_local_redis_reaches_the_broker(tmp_path):
    env = celery_env(tmp_path)
    code, checks = doctor_json(env)
    assert checks["broker"]["status"] == "ok", checks["broker"]
    assert env["OPENMVSEP_CELERY_QUEUE"] in checks["broker"]["detail"]
    assert "0 message(s) queued" in checks["broker"]["detail"]
    # Nothing consumes this fresh queue: a warning, not a failure.
    assert checks["workers"]["status"] == "warn" and "openmvsep worker" in checks["workers"]["detail"]
    # SQLite and a local directory are usable by workers on this machine only.
    assert checks["database"]["status"] == "warn" and checks["storage"]["status"] == "warn"
    assert code == 0


def test_broker_on_a_closed_port_fails_and_names_it(tmp_path):
    port = free_port()  # bound and released: nothing listens there
    url = f"redis://127.0.0.1:{port}/0"
    code, checks = doctor_json(celery_env(tmp_path, OPENMVSEP_BROKER_URL=url))
    assert code == 1
    broker = checks["broker"]
    assert broker["status"] == "fail"
    assert url in broker["detail"] and "OPENMVSEP_BROKER_URL" in broker["detail"]
    assert checks["workers"]["status"] == "warn"  # not asked; the broker is the failure
    plain = run_doctor(celery_env(tmp_path, OPENMVSEP_BROKER_URL=url))
    assert plain.returncode == 1 and "broker" in plain.stdout and "fail" in plain.stdout


def test_broker_password_is_not_printed(tmp_path):
    port = free_port()
    code, checks = doctor_json(celery_env(tmp_path, OPENMVSEP_BROKER_URL=f"redis://:s3cret-pw@127.0.0.1:{port}/0"))
    assert code == 1
    assert "s3cret-pw" not in json.dumps(checks)


def test_a_running_worker_is_listed(tmp_path):
    env = celery_env(tmp_path)
    subprocess.run([str(BIN / "openmvsep"), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    settings = Settings(
        data_dir=tmp_path / "data",
        executor="celery",
        broker_url=LOCAL_REDIS,
        celery_queue=env["OPENMVSEP_CELERY_QUEUE"],
    )
    app = doctor._celery(settings, 2.0)
    workers = CeleryWorkers(env, log=tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 120  # a start-up bound, not a measurement
        ours: list[str] = []
        while not ours and time.monotonic() < deadline and workers.proc.poll() is None:
            ours, _ = doctor.celery_workers(app, settings.celery_queue, 2.0)
        assert ours, (tmp_path / "worker.log").read_text()[-3000:]
        code, checks = doctor_json(env)
        assert checks["workers"]["status"] == "ok"
        assert checks["workers"]["detail"].startswith("1 alive: celery:") and ours[0] in checks["workers"]["detail"]
    finally:
        workers.stop()
        forget_queue(env["OPENMVSEP_CELERY_QUEUE"])


def forget_queue(queue: str) -> None:
    """Remove what a worker declared for `queue` on the shared Redis, so test runs do not pile up keys."""
    import redis

    client = redis.Redis.from_url(LOCAL_REDIS)
    keys = list(client.scan_iter(match=f"*{queue}*"))
    if keys:
        client.delete(*keys)


# ---------------------------------------------------------------- S3 storage


def test_s3_storage_round_trip(seaweedfs, tmp_path):
    bucket = seaweedfs.new_bucket("deploy")
    settings = make_settings(tmp_path, **bucket.settings())
    check = doctor.check_storage(settings, 3.0)
    assert check.status == "ok", check
    assert bucket.url in check.detail and seaweedfs.endpoint in check.detail
    listed = seaweedfs.client().list_objects_v2(Bucket=bucket.name)
    assert listed.get("KeyCount", 0) == 0  # the probe was deleted


def test_s3_missing_bucket_fails_with_the_fix(seaweedfs, tmp_path):
    settings = make_settings(
        tmp_path, storage_url=f"s3://missing-{uuid.uuid4().hex[:12]}/x", s3_endpoint=seaweedfs.endpoint
    )
    check = doctor.check_storage(settings, 3.0)
    assert check.status == "fail"
    assert settings.storage_url in check.detail and "bucket exists" in check.detail


# ---------------------------------------------------------------- /health


def test_health_reports_database_and_executor(harness):
    r = harness.client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"success": True, "status": "ok", "database": "ok", "executor": "local"}


def test_health_is_503_when_the_database_is_gone(tmp_path):
    import psycopg

    with postgres_database() as url:
        h = Harness(make_settings(tmp_path, database_url=url))
        try:
            assert h.client.get("/health").status_code == 200
            admin = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            r = h.client.get("/health")
            assert r.status_code == 503
            body = r.json()
            assert body["success"] is False and body["status"] == "error"
            assert body["database"].startswith("unreachable")
            assert h.client.get("/health/live").json() == {"success": True, "status": "ok"}  # alive all the same
        finally:
            h.close()


# ---------------------------------------------------------------- deploy/


def test_compose_file_describes_the_cluster():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "seaweedfs", "bucket", "migrate", "api", "worker"} <= set(services)
    for name in ("api", "worker", "migrate", "bucket"):
        env_files = services[name]["env_file"]
        assert "env" in (env_files if isinstance(env_files, list) else [env_files])
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert "openmvsep serve" in " ".join(services["api"]["command"])
    assert services["worker"]["command"][:2] == ["openmvsep", "worker"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert services["api"]["deploy"]["replicas"] >= 2
    # Application processes start once the schema is migrated, never racing each other to migrate it.
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["stop_grace_period"] == "90s"  # above OPENMVSEP_WORKER_SHUTDOWN_SECONDS
    assert "[cluster]" in (DEPLOY / "Dockerfile").read_text()
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "server api:8000" in nginx
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]


def test_compose_file_passes_docker_compose_config(tmp_path):
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0
    ):
        pytest.skip("docker compose is not installed")
    # compose needs the env file it names; a copy of the deploy folder gets one made from env.example.
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    shutil.copy(copy / "env.example", copy / "env")
    done = subprocess.run(
        ["docker", "compose", "-f", str(copy / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=copy,
    )
    assert done.returncode == 0, done.stderr


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def seconds(value: str) -> float:
    """A systemd time span such as 90, 90s, 2min or 1min 30s."""
    factors = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    return sum(float(n) * factors[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value))


@pytest.mark.parametrize("name", ["openmvsep-api.service", "openmvsep-worker.service"])
def test_systemd_units(name):
    service = unit(name)["Service"]
    assert service["EnvironmentFile"] == "/etc/openmvsep/env"
    assert service["Restart"] == "always"
    assert service["KillSignal"] == "SIGTERM"
    assert service["ExecStart"].split()[1] == ("serve" if "api" in name else "worker")


def test_worker_unit_waits_longer_than_the_worker_shutdown():
    service = unit("openmvsep-worker.service")["Service"]
    shutdown = Settings.model_fields["worker_shutdown_seconds"].default
    env_value = re.search(r"^#?\s*OPENMVSEP_WORKER_SHUTDOWN_SECONDS=(\S+)", (DEPLOY / "env.example").read_text(), re.M)
    assert env_value and float(env_value.group(1)) == shutdown
    assert seconds(service["TimeoutStopSec"]) > shutdown
    assert service["KillMode"] == "mixed"  # the supervisor stops its processes; systemd only sweeps up after


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The units name /opt/openmvsep/venv/bin/openmvsep; verify checks that it exists, so point at this one.
    for name in ("openmvsep-api.service", "openmvsep-worker.service"):
        text = (
            (DEPLOY / "systemd" / name).read_text().replace("/opt/openmvsep/venv/bin/openmvsep", str(BIN / "openmvsep"))
        )
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n) for n in ("openmvsep-api.service", "openmvsep-worker.service"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [line for line in done.stderr.splitlines() if "openmvsep" in line]
    assert not problems, done.stderr


def test_env_example_names_every_setting():
    text = (DEPLOY / "env.example").read_text()
    named = set(re.findall(r"^#?\s*(OPENMVSEP_[A-Z0-9_]+)=", text, re.M))
    assert {f"OPENMVSEP_{field.upper()}" for field in Settings.model_fields} <= named
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(re.findall(r"^#?\s*(AWS_[A-Z_]+)=", text, re.M))


def test_deploy_guide_covers_the_scale_out_settings():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for field in (
        "database_url",
        "storage_url",
        "s3_endpoint",
        "s3_region",
        "presigned_urls",
        "executor",
        "broker_url",
        "celery_queue",
        "broker_visibility_seconds",
        "reconcile_seconds",
        "worker_shutdown_seconds",
        "lease_seconds",
        "max_attempts",
        "public_url",
    ):
        assert f"OPENMVSEP_{field.upper()}" in guide, field
    for command in ("openmvsep db upgrade", "openmvsep worker", "openmvsep models download", "openmvsep doctor"):
        assert command in guide
