"""`openmvsep client separate` on a folder of three generated files against a real `openmvsep serve`: a run cut
short resumes its job after the server restarts, even when it never saw the create's answer (the server honours
the create's idempotency key: no second job, no second charge), and a second full run downloads nothing new.
Errors print the server's message and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from openmvsep.client import MVSepClient

from conftest import stereo_mix, wav_bytes
from processes import BIN, Server

ENV_OFF = {"OPENMVSEP_RATE_LIMIT_PER_MINUTE": 0, "OPENMVSEP_FREE_CONCURRENT_JOBS": 0}


def _separate(server: Server, token: str, *args: str) -> list[str]:
    command = [str(BIN / "openmvsep"), "client", "separate", *args]
    return [*command, "--server", server.url, "--token", token, "--poll", "0.2"]


def _job_recorded(record) -> bool:
    """The job record names its job: the server answered the create (before that, a stop means a new upload)."""
    try:
        return bool(json.loads(record.read_text()).get("hash"))
    except (OSError, ValueError):
        return False


def test_a_folder_is_separated_resumed_after_a_restart_and_not_downloaded_twice(tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    for n in range(3):
        (songs / f"song{n}.wav").write_bytes(wav_bytes(stereo_mix(0.5, seed=n)))
    (songs / "notes.txt").write_text("not audio: not picked up")
    out = tmp_path / "out"
    args = [str(songs), "--sep-type", "55", "--opt1", "dsp", "--format", "1", "-o", str(out)]

    # No workers: the first job stays queued; the run is stopped once that job exists.
    server = Server(tmp_path / "data", workers=0, **ENV_OFF)
    token = server.cli(
        "user", "create", "--email", "cli@example.com", "--password", "password123", "--credits", "100", "--premium"
    )
    token = token.strip().splitlines()[-1]
    first = subprocess.Popen(_separate(server, token, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    record = out / "song0" / ".openmvsep-job.json"
    deadline = time.time() + 60
    while not _job_recorded(record) and time.time() < deadline:  # the record is written before the upload
        time.sleep(0.1)
    first.terminate()
    first.wait(timeout=20)
    assert _job_recorded(record)
    # As if the stop had come after the server made the job but before its answer arrived: the record keeps the key
    # it wrote before the upload, and no hash. The server honours the key: sent again, it answers that same job.
    kept = json.loads(record.read_text())
    first_hash = kept.pop("hash")
    record.write_text(json.dumps(kept))
    port = server.port
    server.stop()

    # The server comes back with a worker; the same command picks up the job it started instead of paying again.
    server = Server(tmp_path / "data", workers=1, port=port, **ENV_OFF)
    try:
        second = subprocess.run(_separate(server, token, *args), capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        assert second.stdout.count("uploading") == 3  # song0 sent again under its key, song1 and song2
        assert json.loads(record.read_text())["hash"] == first_hash  # answered with the job it already made
        for n in range(3):
            stems = [p for p in (out / f"song{n}").iterdir() if p.suffix == ".wav"]
            assert stems and all(p.read_bytes()[:4] == b"RIFF" for p in stems)
        with MVSepClient(server.url, token=token) as mv:
            assert len(mv.history()) == 3
            credits = mv.user().premium_minutes
        assert credits == 97  # one charge per song: the repeated create made no second job and no second charge

        third = subprocess.run(_separate(server, token, *args), capture_output=True, text=True, timeout=120)
        assert third.returncode == 0, third.stdout + third.stderr
        assert third.stdout.count("already downloaded, skipped") == 3
        with MVSepClient(server.url, token=token) as mv:
            assert len(mv.history()) == 3 and mv.user().premium_minutes == credits
    finally:
        server.stop()


def test_errors_print_the_servers_message_and_exit_1(tmp_path):
    server = Server(tmp_path / "data", workers=0, **ENV_OFF)
    try:
        token = server.cli("user", "create", "--email", "e@example.com", "--password", "password123")
        token = token.strip().splitlines()[-1]
        song = tmp_path / "a.wav"
        song.write_bytes(wav_bytes(stereo_mix(0.5)))
        refused = subprocess.run(
            _separate(server, token, str(song), "--sep-type", "987654", "-o", str(tmp_path / "out")),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 1
        assert "Seperation type 987654 does not exist" in refused.stderr
        missing = subprocess.run(
            [sys.executable, "-m", "openmvsep", "client", "status", "nope", "--server", server.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode == 1 and "not found" in missing.stderr.lower()
        cli = [str(BIN / "openmvsep"), "client"]
        with MVSepClient(server.url) as mv:
            catalogue = mv.algorithms()
        runnable = {a.render_id for a in catalogue if a.raw.get("is_available")}
        assert 55 in runnable and len(runnable) < len(catalogue)
        listed = subprocess.run(
            [*cli, "algorithms", "--runnable", "--server", server.url], capture_output=True, text=True, timeout=60
        )
        assert listed.returncode == 0, listed.stderr
        first_column = {line.split()[1] for line in listed.stdout.splitlines() if line[:1] == "│"}
        assert {str(n) for n in runnable} <= first_column
        assert not first_column & {str(a.render_id) for a in catalogue if a.render_id not in runnable}
        board = subprocess.run(
            [*cli, "qc-leaderboard", "--server", server.url], capture_output=True, text=True, timeout=60
        )
        assert board.returncode == 0 and "algorithm" in board.stdout, board.stderr

        absent = subprocess.run(
            _separate(server, token, str(tmp_path / "absent.wav"), "--sep-type", "55"), capture_output=True, text=True
        )
        assert absent.returncode == 2
    finally:
        server.stop()
