"""The client's flows end to end against a real `openmvsep serve` (sep_type 55 `dsp` needs no weights):
create → wait → download (and resume a cut one), the account and catalogue reads, cancel and delete, and the
server's refusals surfaced as exceptions with the server's own text."""

from __future__ import annotations

import asyncio
import json
import subprocess

import httpx
import pytest

from openmvsep.client import (
    AsyncMVSepClient,
    JobStatus,
    MVSepClient,
    MVSepError,
    NotFound,
    RetryPolicy,
    TooManyJobs,
    Unavailable,
)

from conftest import stereo_mix, wav_bytes
from processes import Server

EMAIL, PASSWORD = "client@example.com", "password123"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    server = Server(root / "data", workers=1, OPENMVSEP_RATE_LIMIT_PER_MINUTE=0, OPENMVSEP_FREE_CONCURRENT_JOBS=0)
    try:
        args = ["user", "create", "--email", EMAIL, "--password", PASSWORD, "--credits", "1000"]
        token = server.cli(*args).strip().splitlines()[-1]
        song = root / "song.wav"
        song.write_bytes(wav_bytes(stereo_mix(1.0)))
        yield server, token, song
    finally:
        server.stop()


def _raw(server: Server, path: str, *args: str) -> dict:
    """The server's answer read with curl, bypassing the client (what the client's errors must repeat)."""
    out = subprocess.run(["curl", "-sS", *args, server.url + path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_create_wait_download_and_resume_a_cut_download(served, tmp_path):
    server, token, song = served
    seen: list[str] = []
    ranges: list[str | None] = []

    def record(request: httpx.Request) -> None:
        if "/storage/" in request.url.path or "/download" in request.url.path:
            ranges.append(request.headers.get("Range"))

    http = httpx.Client(timeout=60, event_hooks={"request": [record]})
    sent: list[tuple[int, int]] = []
    received: list[tuple[int, int | None]] = []
    with MVSepClient(server.url + "/api", token=token, http=http) as mv:
        job = mv.create(song, sep_type=55, add_opt1="dsp", output_format=1, on_upload=lambda *a: sent.append(a))
        assert job.hash and job.link
        size = song.stat().st_size
        assert sent[-1] == (size, size) and all(a[0] <= b[0] for a, b in zip(sent, sent[1:]))
        done = mv.wait(job.hash, on_progress=lambda s: seen.append(s.status), poll_interval=0.2, timeout=120)
        assert isinstance(done, JobStatus) and done.done and done.hash == job.hash
        assert seen[-1] == "done" and set(seen[:-1]) <= {"waiting", "processing", "distributing", "merging"}
        assert done.files and all(f.url and f.download and f.type for f in done.files)

        paths = mv.download_all(done, tmp_path / "stems", on_bytes=lambda *a: received.append(a))
        assert [p.name for p in paths] == [f.download for f in done.files]
        whole_size = sum(p.stat().st_size for p in paths)
        assert received[-1] == (whole_size, whole_size)  # every file counted, against the sizes the server gave
        assert all(a[0] <= b[0] for a, b in zip(received, received[1:]))
        whole = {p: p.read_bytes() for p in paths}
        assert all(len(b) > 1000 and b[:4] == b"RIFF" for b in whole.values())
        assert ranges == [None] * len(paths)

        # A download cut halfway: the .part holds the first half; the next run asks only for the rest.
        first = paths[0]
        half = len(whole[first]) // 2
        first.unlink()
        first.with_name(first.name + ".part").write_bytes(whole[first][:half])
        ranges.clear()
        again = mv.download_all(done, tmp_path / "stems")
        assert again == paths
        assert ranges == [f"bytes={half}-"]  # the others were complete: not fetched again
        assert first.read_bytes() == whole[first]
        assert not first.with_name(first.name + ".part").exists()
    http.close()


def test_the_servers_refusals_are_raised_with_its_own_words(served):
    server, token, song = served
    with MVSepClient(server.url, token=token, retry=RetryPolicy(attempts=1)) as mv:
        with pytest.raises(MVSepError) as refused:
            mv.create(song, sep_type=987654)
        raw = _raw(server, "/api/separation/create", "-F", f"api_token={token}", "-F", "sep_type=987654",
                   "-F", f"audiofile=@{song}")  # fmt: skip
        assert refused.value.message and refused.value.message in json.dumps(raw)
        assert refused.value.status_code and refused.value.status_code >= 400

        with pytest.raises(NotFound) as missing:
            mv.get("20240101000000-0000000000-nothing.wav")
        assert missing.value.message == _raw(server, "/api/separation/get?hash=x")["data"]["message"]

    with MVSepClient(server.url, token="not-a-token") as stranger, pytest.raises(MVSepError) as bad_token:
        stranger.user()
    assert bad_token.value.message and "HTTP" not in bad_token.value.message

    with MVSepClient(server.url) as anonymous, pytest.raises(MVSepError) as bad_login:
        anonymous.login(EMAIL, "wrong-password")
    assert bad_login.value.message == "These credentials do not match our records."


def test_a_file_that_is_not_audio_is_refused_with_the_servers_reason(served, tmp_path):
    server, token, _ = served
    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"RIFF....WAVEthis is not audio" * 50)
    with MVSepClient(server.url, token=token) as mv, pytest.raises(MVSepError) as refused:
        mv.create(not_audio, sep_type=55, add_opt1="dsp")
    raw = _raw(server, "/api/separation/create", "-F", f"api_token={token}", "-F", "sep_type=55",
               "-F", "add_opt1=dsp", "-F", f"audiofile=@{not_audio}")  # fmt: skip
    assert refused.value.message == raw["data"]["message"]
    assert "not in an audio format" in refused.value.message


def test_account_catalogue_and_quality_checker_reads_async(served, tmp_path):
    server, token, song = served

    async def flows() -> None:
        async with AsyncMVSepClient(server.url, token=token) as mv:
            algorithms = await mv.algorithms()
            assert any(a.render_id == 55 for a in algorithms)
            dsp = next(a for a in algorithms if a.render_id == 55)
            assert any("dsp" in f.options for f in dsp.fields)

            me = await mv.user()
            assert me.email == EMAIL and me.premium_minutes == 1000

            progress: list[str] = []

            async def on_progress(status: JobStatus) -> None:
                progress.append(status.status)

            sent: list[tuple[int, int]] = []
            received: list[tuple[int, int | None]] = []
            job = await mv.create(
                song, sep_type=55, add_opt1="dsp", output_format=2, on_upload=lambda *a: sent.append(a)
            )
            assert sent[-1] == (song.stat().st_size,) * 2
            done = await mv.wait(job.hash, on_progress=on_progress, poll_interval=0.2, timeout=120)
            assert progress[-1] == "done"
            paths = await mv.download_all(done, tmp_path, on_bytes=lambda *a: received.append(a))
            assert paths and all(p.read_bytes()[:4] == b"fLaC" for p in paths)
            assert received[-1] == (sum(p.stat().st_size for p in paths),) * 2

            history = await mv.history(limit=20)
            assert job.hash in {h.hash for h in history}
            queue = await mv.queue()
            assert isinstance(queue.queue, dict)
            assert isinstance(await mv.news(lang="en"), list)
            assert isinstance(await mv.demo(), list)
            assert isinstance(await mv.qc_queue(), list)
            board = await mv.qc_leaderboard(0)
            assert isinstance(board.entries, list)

            assert (await mv.delete(job.hash)).success
            with pytest.raises(NotFound):
                await mv.get(job.hash)

            logged = AsyncMVSepClient(server.url)
            account = await logged.login(EMAIL, PASSWORD)
            assert account.email == EMAIL and logged.token == token
            await logged.aclose()

    asyncio.run(flows())


def test_cancel_a_queued_job(tmp_path):
    # no workers: the job stays queued, so cancel must succeed and refund
    server = Server(tmp_path / "data", workers=0, OPENMVSEP_RATE_LIMIT_PER_MINUTE=0, OPENMVSEP_FREE_CONCURRENT_JOBS=0)
    try:
        token = server.cli("user", "create", "--email", EMAIL, "--password", PASSWORD, "--credits", "10")
        token = token.strip().splitlines()[-1]
        with MVSepClient(server.url, token=token) as mv:
            job = mv.create(wav_bytes(stereo_mix(0.5)), sep_type=55, add_opt1="dsp")
            queued = mv.get(job.hash)
            assert queued.status == "waiting" and queued.current_order is not None
            with pytest.raises(TimeoutError):
                mv.wait(job.hash, poll_interval=0.1, timeout=0.3)
            assert mv.cancel(job.hash).success
            assert mv.user().premium_minutes == 10
            with pytest.raises(MVSepError) as twice:
                mv.cancel(job.hash)
            assert twice.value.message and "HTTP" not in twice.value.message
    finally:
        server.stop()


def test_a_create_beyond_the_plan_is_too_many_jobs_and_a_server_gone_is_unavailable(tmp_path):
    server = Server(tmp_path / "data", workers=0, OPENMVSEP_RATE_LIMIT_PER_MINUTE=0, OPENMVSEP_FREE_CONCURRENT_JOBS=1)
    try:
        token = server.cli("user", "create", "--email", EMAIL, "--password", PASSWORD, "--credits", "10")
        token = token.strip().splitlines()[-1]
        with MVSepClient(server.url, token=token) as mv:
            mv.create(wav_bytes(stereo_mix(0.5)), sep_type=55, add_opt1="dsp")
            with pytest.raises(TooManyJobs) as busy:
                mv.create(wav_bytes(stereo_mix(0.5, seed=1)), sep_type=55, add_opt1="dsp")
            raw = _raw(server, "/api/separation/create", "-F", f"api_token={token}", "-F", "sep_type=55",
                       "-F", f"audiofile=@{_write(tmp_path / 'b.wav')}")  # fmt: skip
            assert busy.value.message == raw["data"]["message"]
            with pytest.raises(MVSepError) as other:  # another refusal of a create is not mistaken for it
                mv.create(wav_bytes(stereo_mix(0.5)), sep_type=987654)
            assert not isinstance(other.value, TooManyJobs)
    finally:
        server.stop()
    with MVSepClient(server.url, retry=RetryPolicy(attempts=1)) as gone, pytest.raises(Unavailable):
        gone.get("any")


def _write(path):
    path.write_bytes(wav_bytes(stereo_mix(0.5, seed=2)))
    return path
