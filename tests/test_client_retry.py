"""The client's retries and resumable downloads against a real local HTTP server that misbehaves on purpose:
429 with Retry-After, 5xx, a connection cut in the middle of a download, a size that does not match."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from openmvsep.client import (
    AsyncMVSepClient,
    DownloadError,
    JobFailed,
    MVSepClient,
    MVSepError,
    OutputFile,
    RateLimited,
    RetryPolicy,
)

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class Script:
    """What the server answers, per path, in order; the last answer repeats. Records every request."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Callable[[BaseHTTPRequestHandler], None]]] = {}
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def on(self, path: str, *answers: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.answers[path] = list(answers)

    def requests(self, path: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [r for r in self.seen if r[1] == path]


def json_answer(code: int, body: object, headers: dict[str, str] | None = None):
    def answer(h: BaseHTTPRequestHandler) -> None:
        raw = json.dumps(body).encode()
        h.send_response(code)
        for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    return answer


def payload_cut_after(n: int):
    """The whole file announced, `n` bytes sent, then the connection closes."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(PAYLOAD)))
        h.end_headers()
        h.wfile.write(PAYLOAD[:n])
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(2)

    return answer


def payload_with_range(h: BaseHTTPRequestHandler) -> None:
    start = 0
    wanted = h.headers.get("Range")
    if wanted:
        start = int(wanted.removeprefix("bytes=").split("-")[0])
        h.send_response(206)
        h.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
    else:
        h.send_response(200)
    h.send_header("Content-Length", str(len(PAYLOAD) - start))
    h.end_headers()
    h.wfile.write(PAYLOAD[start:])


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            path = self.path.split("?")[0]
            length = int(self.headers.get("Content-Length") or 0)
            script.seen.append((self.command, path, dict(self.headers), self.rfile.read(length)))
            answers = script.answers.get(path) or [json_answer(404, {"success": False, "message": "no route"})]
            (answers.pop(0) if len(answers) > 1 else answers[0])(self)

        do_GET = do_POST = _any

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


FAST = RetryPolicy(attempts=4, backoff=0.05)


def test_429_is_retried_after_the_servers_retry_after(server):
    url, script = server
    script.on(
        "/api/app/algorithms",
        json_answer(429, {"message": "Too Many Attempts."}, {"Retry-After": "1"}),
        json_answer(200, [{"render_id": 55, "name": "DSP"}]),
    )
    with MVSepClient(url, retry=FAST) as mv:
        started = time.monotonic()
        algorithms = mv.algorithms()
        waited = time.monotonic() - started
    assert [a.render_id for a in algorithms] == [55]
    assert len(script.requests("/api/app/algorithms")) == 2
    assert waited >= 1.0  # Retry-After (1 s), not the policy's 0.05 s backoff


def test_a_create_refused_with_429_is_sent_again_whole(server, tmp_path):
    url, script = server
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF" + b"x" * 5000)
    script.on(
        "/api/separation/create",
        json_answer(429, {"message": "Too Many Attempts."}, {"Retry-After": "0"}),
        json_answer(200, {"success": True, "data": {"hash": "h1", "link": "l"}}),
    )
    with MVSepClient(url, token="tok", retry=FAST) as mv:
        assert mv.create(song, sep_type=55, add_opt1="dsp").hash == "h1"
    bodies = [body for *_, body in script.requests("/api/separation/create")]
    assert len(bodies) == 2 and all(song.read_bytes() in b and b"dsp" in b for b in bodies)


def test_5xx_is_retried_for_reads_but_never_for_a_create(server):
    url, script = server
    script.on("/api/app/queue", json_answer(503, {"message": "down"}), json_answer(200, {"queue": {"in_process": 1}}))
    script.on("/api/separation/create", json_answer(500, {"success": False, "data": {"message": "disk full"}}))
    with MVSepClient(url, token="tok", retry=FAST) as mv:
        assert mv.queue().queue == {"in_process": 1}
        with pytest.raises(MVSepError, match="^disk full$") as refused:
            mv.create(b"audio", sep_type=55)
    assert refused.value.status_code == 500
    assert len(script.requests("/api/app/queue")) == 2
    assert len(script.requests("/api/separation/create")) == 1  # a second POST could make a second job and charge


def test_429_forever_ends_as_rate_limited_with_the_servers_message(server):
    url, script = server
    script.on("/api/app/news", json_answer(429, {"message": "Too Many Attempts."}, {"Retry-After": "0"}))
    with MVSepClient(url, retry=FAST) as mv, pytest.raises(RateLimited, match="Too Many Attempts."):
        mv.news()
    assert len(script.requests("/api/app/news")) == FAST.attempts


def test_a_cut_download_resumes_with_range(server, tmp_path):
    url, script = server
    script.on("/storage/processed/a_vocals.wav", payload_cut_after(40_000), payload_with_range)
    file = OutputFile("Vocals", url + "/storage/processed/a_vocals.wav", "a_vocals.wav", bytes=len(PAYLOAD))
    with MVSepClient(url, retry=FAST) as mv:
        path = mv.download(file, tmp_path)
    assert path == tmp_path / "a_vocals.wav" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "a_vocals.wav.part").exists()
    first, second = script.requests("/storage/processed/a_vocals.wav")
    assert "Range" not in first[2]
    assert second[2]["Range"] == "bytes=40000-"  # only the missing bytes asked for again


def test_async_download_resumes_too_and_a_finished_file_is_not_fetched_again(server, tmp_path):
    url, script = server
    script.on("/storage/processed/b_bass.wav", payload_cut_after(10_000), payload_with_range)
    file = OutputFile("Bass", url + "/storage/processed/b_bass.wav", "b_bass.wav", bytes=len(PAYLOAD))

    async def twice() -> Path:
        async with AsyncMVSepClient(url, retry=FAST) as mv:
            await mv.download(file, tmp_path)
            return await mv.download(file, tmp_path)

    assert asyncio.run(twice()).read_bytes() == PAYLOAD
    assert [r[2].get("Range") for r in script.requests("/storage/processed/b_bass.wav")] == [None, "bytes=10000-"]


def test_a_download_of_the_wrong_size_is_refused(server, tmp_path):
    url, script = server
    script.on("/storage/processed/c.wav", payload_with_range)
    file = OutputFile("Other", url + "/storage/processed/c.wav", "c.wav", bytes=len(PAYLOAD) + 1)
    with MVSepClient(url, retry=FAST) as mv, pytest.raises(DownloadError, match="announced"):
        mv.download(file, tmp_path)
    assert not (tmp_path / "c.wav").exists()


def test_async_client_retries_429_and_surfaces_messages(server):
    url, script = server
    script.on(
        "/api/app/user",
        json_answer(429, {}, {"Retry-After": "0"}),
        json_answer(400, {"success": False, "data": {"message": "Invalid API key"}}),
    )

    async def user() -> None:
        async with AsyncMVSepClient(url, token="bad", retry=FAST) as mv:
            await mv.user()

    with pytest.raises(MVSepError, match="^Invalid API key$"):
        asyncio.run(user())
    assert len(script.requests("/api/app/user")) == 2


def test_wait_follows_every_active_status_to_failed_with_the_reason(server):
    url, script = server
    statuses = [
        {"success": True, "status": "waiting", "data": {"queue_count": 3, "current_order": 2}},
        {"success": True, "status": "distributing", "data": {"finished_chunks": 1, "all_chunks": 4}},
        {"success": True, "status": "processing", "data": {}},
        {"success": True, "status": "merging", "data": {}},
        {"success": True, "status": "failed", "data": {"message": "Out of GPU memory"}},
    ]
    script.on("/api/separation/get", *(json_answer(200, s) for s in statuses))
    seen = []
    with (
        MVSepClient(url, retry=FAST, sleep=lambda s: None) as mv,
        pytest.raises(JobFailed, match="^Out of GPU memory$"),
    ):
        mv.wait("h", on_progress=lambda s: seen.append((s.status, s.current_order, s.finished_chunks)))
    assert seen == [("waiting", 2, None), ("distributing", None, 1), ("processing", None, None),
                    ("merging", None, None), ("failed", None, None)]  # fmt: skip


def test_wait_stops_on_a_status_outside_the_contract(server):
    url, script = server
    script.on("/api/separation/get", json_answer(200, {"success": True, "status": "converting", "data": {}}))
    with (
        MVSepClient(url, sleep=lambda s: None) as mv,
        pytest.raises(MVSepError, match="unexpected status 'converting'"),
    ):
        mv.wait("h")


def test_a_create_with_an_idempotency_key_is_retried_on_5xx_with_the_same_key(server):
    url, script = server
    script.on(
        "/api/separation/create",
        json_answer(502, {"message": "Bad Gateway"}),
        json_answer(200, {"success": True, "data": {"hash": "h2", "link": "l"}}),
    )
    with MVSepClient(url, token="tok", retry=FAST) as mv:
        assert mv.create(b"audio", sep_type=55, idempotency_key="k-123").hash == "h2"
    keys = [headers.get("Idempotency-Key") for _, _, headers, _ in script.requests("/api/separation/create")]
    assert keys == ["k-123", "k-123"]
