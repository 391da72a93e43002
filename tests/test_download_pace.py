"""URL downloads cannot hold a worker: an overall deadline and a minimum rate against a real server that trickles
bytes, and downloads do not jump ahead of the separations queued before them."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from openmvsep.service import lifecycle

from conftest import stereo_mix, wav_bytes


class Trickle:
    """A real HTTP server announcing a big WAV and sending one byte every `every` seconds, for `for_seconds`."""

    def __init__(self, every: float = 0.1, for_seconds: float = 15.0) -> None:
        stop = self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(10_000_000))
                self.end_headers()
                until = time.monotonic() + for_seconds
                try:
                    while time.monotonic() < until and not stop.is_set():
                        self.wfile.write(b"R")
                        self.wfile.flush()
                        time.sleep(every)
                except OSError:  # the client hung up: what the deadline is for
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slow.wav"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    server = Trickle()
    yield server
    server.close()


def create_remote(h, token: str, url: str) -> str:
    r = h.client.post("/api/separation/create", data={"api_token": token, "sep_type": "55", "url": url}).json()
    assert r["success"] is True, r
    return r["data"]["hash"]


def remote_state(h, short: str) -> dict:
    return h.client.get("/api/separation/get-remote", params={"hash": short}).json()


def test_a_trickling_download_is_cut_off_at_the_deadline(make_harness, trickle):
    h = make_harness(remote_allow_private=True, remote_deadline_seconds=2, remote_min_bytes_per_second=0)
    short = create_remote(h, h.user(), trickle.url)
    started = time.monotonic()
    h.run_all()
    elapsed = time.monotonic() - started
    assert elapsed < 4, f"the download held the worker {elapsed:.1f} s"  # the deadline, and one byte's wait
    state = remote_state(h, short)
    assert state["status"] == "failed"
    assert state["data"]["message"] == "the download took longer than the 2 s limit; the remote server is too slow"


def test_a_trickling_download_is_cut_off_below_the_minimum_rate(make_harness, trickle):
    h = make_harness(
        remote_allow_private=True,
        remote_deadline_seconds=60,
        remote_min_bytes_per_second=1000,
        remote_rate_window_seconds=1,
    )
    short = create_remote(h, h.user(), trickle.url)
    started = time.monotonic()
    h.run_all()
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"the download held the worker {elapsed:.1f} s"  # one window, and one byte's wait
    state = remote_state(h, short)
    assert state["status"] == "failed"
    message = state["data"]["message"]
    assert message.startswith("the remote server is too slow:") and "the minimum is 1000 bytes/s" in message


def test_a_download_does_not_jump_ahead_of_an_older_separation(harness, trickle):
    audio = wav_bytes(stereo_mix(1.0))
    upload = harness.create(harness.user("first@example.com"), audio)["data"]["hash"]
    create_remote(harness, harness.user("second@example.com"), trickle.url)
    create_remote(harness, harness.user("third@example.com"), trickle.url)
    claim = lifecycle.claim_next(harness.ctx.db, "test-worker", 60)
    assert claim is not None and claim.kind == "whole"  # the separation, queued first, while downloads wait
    assert lifecycle.waiting_work(harness.ctx.db) == 2
    harness.worker.run_claim(claim)
    assert harness.get(upload)["status"] == "done"
    # Then the downloads, in their order.
    after = lifecycle.claim_next(harness.ctx.db, "test-worker", 60)
    assert after is not None and after.kind == "remote"


def test_an_older_download_still_goes_first(harness, trickle):
    short = create_remote(harness, harness.user("first@example.com"), trickle.url)
    harness.create(harness.user("second@example.com"), wav_bytes(stereo_mix(1.0)))
    claim = lifecycle.claim_next(harness.ctx.db, "test-worker", 60)
    assert claim is not None and claim.kind == "remote"
    assert remote_state(harness, short)["status"] == "processing"
