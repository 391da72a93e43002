"""`openmvsep client ...` as a user runs it, against a real `openmvsep serve`:

- a folder of three generated files is separated by one run that survives a server restart midway, picking up the
  job a stopped run had started, even when it never saw the create's answer (the server honours the create's
  idempotency key: no second job, no second charge); a second run downloads nothing new;
- with a plan that runs one job at a time, three files all finish and the server's refusal of a second job is never
  shown as an error;
- `client qc submit` scores an entry (and one the checker fails exits 3);
- the server and token come from the flags, then the environment, then the config file;
- errors print the server's message and exit with the documented codes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import zipfile
from pathlib import Path

import soundfile as sf

from openmvsep.client import MVSepClient

from conftest import stereo_mix, wav_bytes
from processes import BIN, Server, free_port

ENV_OFF = {"OPENMVSEP_RATE_LIMIT_PER_MINUTE": 0, "OPENMVSEP_FREE_CONCURRENT_JOBS": 0}
CLI = [str(BIN / "openmvsep"), "client"]


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without any client setting of the machine's user, plus `extra`."""
    names = ("OPENMVSEP_CLIENT_SERVER", "OPENMVSEP_CLIENT_TOKEN", "MVSEP_API_TOKEN", "OPENMVSEP_CLIENT_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["XDG_CONFIG_HOME"] = extra.pop("XDG_CONFIG_HOME", "/nonexistent")  # no real ~/.config/openmvsep
    return {**env, **extra}


def _run(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=_env(**env))


def _separate(server: Server, token: str, *args: str) -> list[str]:
    return [*CLI, "separate", *args, "--server", server.url, "--token", token, "--poll", "0.2"]


def _user(server: Server, email: str, credits: int = 100, *, premium: bool = False) -> str:
    args = ["user", "create", "--email", email, "--password", "password123", "--credits", str(credits)]
    out = server.cli(*args, *(["--premium"] if premium else []))
    return out.strip().splitlines()[-1]


def _songs(folder: Path, count: int = 3, seconds: float = 0.5) -> Path:
    folder.mkdir()
    for n in range(count):
        (folder / f"song{n}.wav").write_bytes(wav_bytes(stereo_mix(seconds, seed=n)))
    (folder / "notes.txt").write_text("not audio: not picked up")
    return folder


def _hash_of(record: Path) -> str | None:
    """The job a record names (none before the server answered the create)."""
    try:
        return json.loads(record.read_text()).get("hash")
    except (OSError, ValueError):
        return None


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


def test_a_folder_survives_a_server_restart_midway_and_a_second_run_downloads_nothing(tmp_path):
    songs = _songs(tmp_path / "songs")
    out = tmp_path / "out"
    args = [str(songs), "--sep-type", "55", "--opt1", "dsp", "--format", "1", "-o", str(out)]
    records = [out / f"song{n}" / ".openmvsep-job.json" for n in range(3)]

    # No workers: jobs stay queued. A first run, one job at a time, is stopped once its first job exists.
    server = Server(tmp_path / "data", workers=0, **ENV_OFF)
    token = _user(server, "cli@example.com", premium=True)  # premium jobs are charged: a second charge would show
    first = subprocess.Popen(
        [*_separate(server, token, *args), "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env()
    )
    _wait_for(lambda: _hash_of(records[0]), "the first job created")
    first.terminate()
    first.wait(timeout=20)
    first_job = _hash_of(records[0])
    # As if the stop had come after the server made the job but before its answer arrived: the record keeps the key
    # it wrote before the upload, and no hash. The server honours the key: sent again, it answers that same job.
    kept = json.loads(records[0].read_text())
    kept.pop("hash")
    records[0].write_text(json.dumps(kept))

    # A second run picks that job up, creates the other two, and is still waiting on all three when the server goes
    # down; the server comes back with a worker, and the same run finishes.
    second = subprocess.Popen(
        [*_separate(server, token, *args), "--jobs", "3", "--patience", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        _wait_for(lambda: all(_hash_of(r) for r in records), "three jobs created")
        port = server.port
        server.stop()
        server = Server(tmp_path / "data", workers=1, port=port, **ENV_OFF)
        stdout, stderr = second.communicate(timeout=300)
        assert second.returncode == 0, stdout + stderr
        assert _hash_of(records[0]) == first_job  # resumed, not made again
        assert stdout.count("uploading") == 3  # song0 sent again under its key, song1 and song2
        # Plain lines (not a terminal): the upload, the place in the queue, the download, the result.
        for song in ("song0.wav", "song1.wav", "song2.wav"):
            assert f"{song}: uploading (" in stdout
        assert "song0.wav: waiting (place " in stdout
        for n in range(3):
            stems = [p for p in (out / f"song{n}").iterdir() if p.suffix == ".wav"]
            assert stems and all(p.read_bytes()[:4] == b"RIFF" for p in stems)
            assert f"song{n}.wav: downloading {len(stems)} file(s) (" in stdout
            assert f"song{n}.wav: {len(stems)} file(s) in {out / f'song{n}'}" in stdout
        with MVSepClient(server.url, token=token) as mv:
            assert len(mv.history()) == 3
            credits = mv.user().premium_minutes
        assert credits == 97  # one charge per song: the repeated create made no second job and no second charge

        third = subprocess.run(_separate(server, token, *args), capture_output=True, text=True, timeout=120, env=_env())
        assert third.returncode == 0, third.stdout + third.stderr
        assert third.stdout.count("already downloaded, skipped") == 3
        assert "uploading" not in third.stdout and "downloading" not in third.stdout
        with MVSepClient(server.url, token=token) as mv:
            assert len(mv.history()) == 3 and mv.user().premium_minutes == credits
    finally:
        if second.poll() is None:
            second.kill()
        server.stop()


def test_a_plan_of_one_job_at_a_time_runs_three_files_without_a_refusal_shown(tmp_path):
    songs = _songs(tmp_path / "songs")
    limits = {"OPENMVSEP_RATE_LIMIT_PER_MINUTE": 0, "OPENMVSEP_FREE_CONCURRENT_JOBS": 1}
    server = Server(tmp_path / "data", workers=0, **limits)  # the first job stays, so a second create is refused
    log = tmp_path / "cli.log"
    try:
        token = _user(server, "free@example.com")
        args = [str(songs), "--sep-type", "55", "--opt1", "dsp", "-o", str(tmp_path / "out"), "--jobs", "3"]
        with open(log, "w") as stdout:
            run = subprocess.Popen(_separate(server, token, *args), stdout=stdout, stderr=subprocess.PIPE, text=True,
                                   env=_env())  # fmt: skip
            _wait_for(lambda: "waiting for one of your jobs to finish" in log.read_text(), "a create refused")
            port = server.port
            server.stop()
            server = Server(tmp_path / "data", workers=1, port=port, **limits)
            _, stderr = run.communicate(timeout=300)
        shown = log.read_text()
        assert run.returncode == 0, shown + stderr
        assert stderr == ""
        assert "already have" not in shown  # the server's refusal of a second job is handled, not shown
        assert shown.count(" file(s) in ") == 3
        with MVSepClient(server.url, token=token) as mv:
            history = mv.history()
        assert len(history) == 3  # one job per file: the refused create made nothing
    finally:
        server.stop()


def _entry_zip(dataset: Path, path: Path, *, frames: int | None = None) -> Path:
    """The dataset's own vocals as the entry (a perfect score), or cut to `frames` (the checker refuses them)."""
    with zipfile.ZipFile(path, "w") as z:
        for song in sorted(p for p in dataset.iterdir() if p.is_dir()):
            data, rate = sf.read(song / "vocals.wav", dtype="int16", always_2d=True)
            buf = io.BytesIO()
            sf.write(buf, data[:frames], rate, subtype="PCM_16", format="WAV")
            z.writestr(f"{song.name}_vocals.wav", buf.getvalue())
    return path


def test_qc_submit_scores_an_entry_and_the_config_file_names_server_and_token(tmp_path):
    data = tmp_path / "data"
    server = Server(
        data,
        workers=1,
        OPENMVSEP_RATE_LIMIT_PER_MINUTE=0,
        OPENMVSEP_QC_DEFAULT_DATASET_TRACKS=2,
        OPENMVSEP_QC_DEFAULT_DATASET_SECONDS=1,
    )
    try:
        token = _user(server, "qc@example.com")
        config = tmp_path / "client.toml"
        config.write_text(f'server = "{server.url}"\ntoken = "{token}"\n')
        dataset = data / "qc" / "synthetic"
        entry = _entry_zip(dataset, tmp_path / "entry.zip")

        # No --server, no --token: both from the file.
        submitted = _run("qc", "submit", str(entry), "--name", "Perfect", "--password", "pw-12345", "--poll", "0.2",
                         OPENMVSEP_CLIENT_CONFIG=str(config))  # fmt: skip
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "uploading entry.zip" in submitted.stdout and "entry 1:" in submitted.stdout
        assert "vocals" in submitted.stdout and "inf" not in submitted.stdout.lower()
        board = _run("--config", str(config), "qc", "leaderboard", "--search", "perf")
        assert board.returncode == 0 and "Perfect" in board.stdout, board.stdout + board.stderr
        old_name = _run("--config", str(config), "qc-leaderboard")  # the first release's name, kept
        assert old_name.returncode == 0 and "Perfect" in old_name.stdout

        # The checker fails an entry whose files are too short: exit 3 with its reason.
        short = _entry_zip(dataset, tmp_path / "short.zip", frames=100)
        failed = _run("--config", str(config), "qc", "submit", str(short), "--name", "Short", "--password", "pw-12345",
                      "--poll", "0.2")  # fmt: skip
        assert failed.returncode == 3, failed.stdout + failed.stderr
        assert "Different shapes" in failed.stderr

        # The environment's token beats the file's: a wrong one is refused in the server's words (exit 1).
        refused = _run("--config", str(config), "history", OPENMVSEP_CLIENT_TOKEN="not-a-token")
        assert refused.returncode == 1 and refused.stderr.strip(), refused.stdout + refused.stderr
        # ... and the flag beats the environment.
        listed = _run("--config", str(config), "history", "--token", token, OPENMVSEP_CLIENT_TOKEN="not-a-token")
        assert listed.returncode == 0, listed.stderr
    finally:
        server.stop()


def _in_process(*args: str, **env: str):
    """`openmvsep client ...` run in this process (the precedence rules need no server, and no process start)."""
    from typer.testing import CliRunner

    from openmvsep.cli import app

    names = ("OPENMVSEP_CLIENT_SERVER", "OPENMVSEP_CLIENT_TOKEN", "MVSEP_API_TOKEN", "OPENMVSEP_CLIENT_CONFIG")
    clean: dict[str, str | None] = {name: None for name in names}
    clean["XDG_CONFIG_HOME"] = "/nonexistent"
    return CliRunner().invoke(app, ["client", *args], env={**clean, **env})


def test_server_and_token_come_from_flags_then_environment_then_config_file(tmp_path):
    config = tmp_path / "client.toml"
    saved = _in_process("--config", str(config), "config", "--server", "http://a.example", "--token", "file-token",
                        "--save")  # fmt: skip
    assert saved.exit_code == 0, saved.output
    assert oct(config.stat().st_mode & 0o777) == "0o600"

    def shown(*args: str, **env: str) -> dict[str, str]:
        run = _in_process("--config", str(config), "config", *args, **env)
        assert run.exit_code == 0, run.output
        return dict(line.split(": ", 1) for line in run.stdout.splitlines() if ": " in line)

    assert shown() == {
        "config file": str(config),
        "server": f"http://a.example (from {config})",
        "token": f"file… (from {config})",
    }
    # The environment beats the file; the file's token is not sent to a server other than the file's.
    other = shown(OPENMVSEP_CLIENT_SERVER="http://b.example")
    assert other["server"] == "http://b.example (from OPENMVSEP_CLIENT_SERVER)" and other["token"] == "none"
    env_token = shown(OPENMVSEP_CLIENT_TOKEN="env-token")
    assert env_token["token"] == "env-… (from OPENMVSEP_CLIENT_TOKEN)"
    assert env_token["server"] == f"http://a.example (from {config})"
    assert shown(MVSEP_API_TOKEN="mvsep-token")["token"] == "mvse… (from MVSEP_API_TOKEN)"
    # Flags beat both.
    flags = shown("--server", "http://c.example", "--token", "flag-token", OPENMVSEP_CLIENT_SERVER="http://b.example",
                  OPENMVSEP_CLIENT_TOKEN="env-token")  # fmt: skip
    assert flags["server"] == "http://c.example (from --server)" and flags["token"] == "flag… (from --token)"
    # $OPENMVSEP_CLIENT_CONFIG names the file; with none anywhere, the server is mvsep.com.
    by_env = _in_process("config", OPENMVSEP_CLIENT_CONFIG=str(config))
    assert f"server: http://a.example (from {config})" in by_env.stdout
    bare = _in_process("config", XDG_CONFIG_HOME=str(tmp_path / "empty"))
    assert "server: https://mvsep.com (from default)" in bare.stdout and "token: none" in bare.stdout
    assert f"config file: {tmp_path / 'empty' / 'openmvsep' / 'client.toml'} (none)" in bare.stdout

    config.write_text("server = [1, 2]\n")
    broken = _in_process("--config", str(config), "config")
    assert broken.exit_code == 2 and "must be a non-empty string" in broken.output
    config.write_text('server = "http://a.example"\ntokne = "typo"\n')
    typo = _in_process("--config", str(config), "history")
    assert typo.exit_code == 2 and "unknown setting(s) tokne" in typo.output


def test_errors_print_the_servers_message_and_exit_with_the_documented_codes(tmp_path):
    server = Server(tmp_path / "data", workers=0, **ENV_OFF)
    try:
        token = _user(server, "e@example.com")
        song = tmp_path / "a.wav"
        song.write_bytes(wav_bytes(stereo_mix(0.5)))
        refused = subprocess.run(
            _separate(server, token, str(song), "--sep-type", "987654", "-o", str(tmp_path / "out")),
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
        assert refused.returncode == 1
        assert "Seperation type 987654 does not exist" in refused.stderr
        missing = _run("status", "nope", "--server", server.url)
        assert missing.returncode == 1 and "not found" in missing.stderr.lower()

        with MVSepClient(server.url) as mv:
            catalogue = mv.algorithms()
        runnable = {a.render_id for a in catalogue if a.raw.get("is_available")}
        assert 55 in runnable and len(runnable) < len(catalogue)
        listed = _run("algorithms", "--runnable", "--server", server.url)
        assert listed.returncode == 0, listed.stderr
        first_column = {line.split()[1] for line in listed.stdout.splitlines() if line[:1] == "│"}
        assert {str(n) for n in runnable} <= first_column
        assert not first_column & {str(a.render_id) for a in catalogue if a.render_id not in runnable}

        # Usage errors: 2.
        absent = subprocess.run(_separate(server, token, str(tmp_path / "absent.wav"), "--sep-type", "55"),
                                capture_output=True, text=True, env=_env())  # fmt: skip
        assert absent.returncode == 2 and "no such file" in absent.stderr
        no_token = _run("separate", str(song), "--sep-type", "55", "--server", server.url)
        assert no_token.returncode == 2 and "No API token" in no_token.stderr
        assert _run("separate", str(song)).returncode == 2  # --sep-type missing
    finally:
        server.stop()

    # Nothing listens: 4, once the client's retries and the run's patience are spent.
    nowhere = f"http://127.0.0.1:{free_port()}"
    gone = _run("separate", str(song), "--sep-type", "55", "--patience", "0", "--server", nowhere, "--token", token,
                "-o", str(tmp_path / "out"), timeout=120)  # fmt: skip
    assert gone.returncode == 4 and "a.wav: " in gone.stderr and "ConnectError" in gone.stderr, gone.stderr
