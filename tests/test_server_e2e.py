"""The real thing: `openmvsep serve` in a subprocess with its worker processes, driven with curl."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import stereo_mix
from processes import Server

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data")
    yield s
    s.stop()


def test_curl_job_as_the_api_page_shows(server, tmp_path):
    token = server.cli("user", "create", "--email", "curl@example.com", "--password", "password123").strip()
    token = token.splitlines()[-1]
    assert len(token) == 30
    mix = stereo_mix(3.0)
    song = tmp_path / "My Song.wav"
    sf.write(song, mix.T, 44100, subtype="PCM_16")
    created = server.curl(
        "/api/separation/create",
        "-X",
        "POST",
        "-F",
        f"api_token={token}",
        "-F",
        "sep_type=55",
        "-F",
        "add_opt1=dsp",
        "-F",
        "output_format=1",
        "-F",
        f"audiofile=@{song}",
    )
    assert created["success"] is True and created["data"]["link"].startswith(server.url)
    done = server.wait_status(created["data"]["hash"], {"done", "failed"})
    assert done["status"] == "done", done
    decoded = {}
    for f in done["data"]["files"]:
        target = tmp_path / f["download"]
        subprocess.run(["curl", "-sS", "--fail", "-o", str(target), f["url"]], check=True, timeout=60)
        audio, rate = sf.read(target, dtype="float32", always_2d=True)
        info = sf.info(target)
        assert rate == 44100 and info.subtype == "PCM_16"
        decoded[f["type"]] = audio.T
    reference, _ = sf.read(song, dtype="float32", always_2d=True)
    np.testing.assert_allclose(decoded["Center"] + decoded["Wide"], reference.T, atol=3 / 32768)


def test_worker_killed_mid_job_finishes_on_respawned_worker(tmp_path):
    server = Server(
        tmp_path / "data",
        OPENMVSEP_CHUNK_THRESHOLD_SECONDS="1",
        OPENMVSEP_CHUNK_SECONDS="0.5",
        OPENMVSEP_CHUNK_OVERLAP_SECONDS="0.05",
    )
    try:
        token = (
            server.cli(
                "user",
                "create",
                "--email",
                "k@example.com",
                "--password",
                "password123",
                "--premium",
                "--credits",
                "10",
            )
            .strip()
            .splitlines()[-1]
        )
        song = tmp_path / "long.flac"
        sf.write(song, stereo_mix(30.0).T, 44100)
        created = server.curl(
            "/api/separation/create",
            "-F",
            f"api_token={token}",
            "-F",
            "sep_type=55",
            "-F",
            "add_opt1=dsp",
            "-F",
            "output_format=2",
            "-F",
            f"audiofile=@{song}",
        )
        hash_value = created["data"]["hash"]
        server.wait_status(hash_value, {"distributing"})
        victims = server.worker_pids()
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        done = server.wait_status(hash_value, {"done", "failed"}, timeout=120)
        assert done["status"] == "done", done
        assert server.worker_pids() and server.worker_pids() != victims  # a new worker took over
        user = server.curl(f"/api/app/user?api_token={token}")["data"]
        assert user["premium_minutes"] == 10 - 1  # 30 s: one credit, charged once
    finally:
        server.stop()


def test_restart_takes_back_work_of_the_previous_run(tmp_path):
    from openmvsep.runner.local import worker_name_prefix
    from openmvsep.service import lifecycle
    from openmvsep.settings import Settings
    from openmvsep.store.db import Database

    data = tmp_path / "data"
    first = Server(data, workers=0)
    try:
        token = first.cli("user", "create", "--email", "r@example.com", "--password", "password123").strip()
        song = tmp_path / "a.wav"
        sf.write(song, stereo_mix(1.0).T, 44100)
        hash_value = first.curl(
            "/api/separation/create",
            "-F",
            f"api_token={token.splitlines()[-1]}",
            "-F",
            "sep_type=55",
            "-F",
            "add_opt1=dsp",
            "-F",
            f"audiofile=@{song}",
        )["data"]["hash"]
    finally:
        first.stop()
    # A worker of that earlier run had claimed the job when the machine went down.
    db = Database(Settings(data_dir=data).effective_database_url)
    assert lifecycle.claim_next(db, f"{worker_name_prefix()}deadboot:0", lease_seconds=3600) is not None
    db.dispose()
    second = Server(data, workers=1)
    try:
        assert second.wait_status(hash_value, {"done", "failed"})["status"] == "done"
    finally:
        second.stop()


def _gone(pids: list[int], timeout: float = 20) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and "(Z)" not in _state(pid) for pid in pids):
            return True
        time.sleep(0.2)
    return False


def _state(pid: int) -> str:
    try:
        return "(" + Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] + ")"
    except OSError:
        return "(gone)"


def test_workers_do_not_outlive_a_killed_server(tmp_path):
    server = Server(tmp_path / "data", workers=2)
    deadline = time.time() + 30
    while len(server.worker_pids()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    workers = server.worker_pids()
    assert len(workers) == 2
    server.proc.kill()  # SIGKILL: no shutdown code runs (the OOM killer, a power cut of the process)
    server.proc.wait()
    assert _gone(workers), "worker processes kept running after their server died"


def test_celery_workers_do_not_outlive_their_supervisor(tmp_path):
    from processes import CeleryWorkers

    env = {
        **os.environ,
        "OPENMVSEP_DATA_DIR": str(tmp_path / "data"),
        "OPENMVSEP_EXECUTOR": "celery",
        "OPENMVSEP_CELERY_QUEUE": f"openmvsep-orphans-{os.getpid()}",
    }
    pool = CeleryWorkers(env, concurrency=2, log=tmp_path / "worker.log")
    try:
        deadline = time.time() + 30
        while len(pool.children()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        children = pool.children()
        assert len(children) == 2
        os.kill(pool.proc.pid, signal.SIGKILL)  # the supervisor alone
        pool.proc.wait()
        assert _gone(children, timeout=60), "celery workers kept running after their supervisor died"
    finally:
        pool.kill()
