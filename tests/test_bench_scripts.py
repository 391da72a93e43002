"""The benchmark scripts start (their timings are not tests): every one answers --help when run as a script
from a checkout, as the README runs them — bench/queue.py must not shadow the standard library's `queue`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_starts(script):
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120, cwd=BENCH.parent
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def test_queue_bench_measures_both_executors():
    """bench/queue.py brings up both deployments (real PostgreSQL and Redis for celery) and measures each."""
    import json

    from processes import PG_ADMIN, skip_without_postgres

    skip_without_postgres()
    postgres = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "queue.py"),
            "--latency-jobs",
            "2",
            "--throughput-jobs",
            "2",
            "--postgres",
            postgres,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert [r["executor"] for r in report["results"]] == ["local", "celery"]
    for row in report["results"]:
        assert 0 < row["latency_ms"]["min"] <= row["latency_ms"]["median"] <= row["latency_ms"]["p90"]
        assert row["jobs_per_second"] > 0
    assert report["results"][1]["database"].startswith("PostgreSQL")
    assert report["celery_over_local"]["median"] > 0


def test_startup_bench_times_serve_and_sees_no_torch():
    """bench/startup.py starts `openmvsep serve`, times its first answer and tells whether torch was imported."""
    import json

    done = subprocess.run(
        [sys.executable, str(BENCH / "startup.py"), "--rounds", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout)["this"]
    assert 0 < row["median_s"] < 120 and row["torch_imported"] is False
