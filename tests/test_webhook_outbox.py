"""Webhooks leave the separation workers: an outbox written with the job's end, delivered by the API process's
senders under a lease, with retries; and a webhook_url checked when the job is created."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select, update

from openmvsep.service import webhooks
from openmvsep.store.models import CreditEntry, Job, RemoteJob, WebhookEvent
from openmvsep.store.status import WebhookStatus

from conftest import stereo_mix, wav_bytes


class BlackHole:
    """A TCP server that accepts connections and never answers (a receiver that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)  # kept open, never read from nor written to

    def close(self) -> None:
        self._stop.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


class Receiver:
    """A real HTTP receiver; `hang_first` requests are held past any timeout before it starts answering 200."""

    def __init__(self, hang_first: int = 0, hang_seconds: float = 4.0) -> None:
        self.posts: list[dict] = []
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.requests += 1
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if receiver.requests <= hang_first:
                    time.sleep(hang_seconds)  # the sender gave up long before
                    return
                receiver.posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def wait_for(condition: Callable[[], object], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def events(h) -> list[WebhookEvent]:
    with h.ctx.db.reader() as s:
        return list(s.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


QUICK_SENDERS = dict(
    remote_allow_private=True,  # the receivers of these tests live on 127.0.0.1
    webhook_timeout_seconds=1.0,
    webhook_retry_seconds=0.2,
    webhook_poll_seconds=0.05,
)


def test_a_receiver_that_never_answers_does_not_hold_the_worker(make_harness, black_hole):
    h = make_harness(**QUICK_SENDERS)
    hanging = Receiver(hang_first=1)
    try:
        first = h.user("a@example.com")
        second = h.user("b@example.com")
        audio = wav_bytes(stereo_mix(1.0))
        stuck = h.create(first, audio, webhook_url=f"http://127.0.0.1:{black_hole.port}/hook")["data"]["hash"]
        later = h.create(second, audio, webhook_url=hanging.url)["data"]["hash"]
        started = time.monotonic()
        assert h.run_all() == 2
        elapsed = time.monotonic() - started
        # Before the outbox the worker itself posted each webhook: 3 tries of 10 s on the black hole alone.
        assert elapsed < 8, f"the worker took {elapsed:.1f} s for two short jobs"
        assert h.get(stuck)["status"] == "done" and h.get(later)["status"] == "done"

        # The event whose receiver hung on the first try is delivered on a later one, with the get body.
        wait_for(lambda: hanging.posts)
        (body,) = hanging.posts
        assert body["hash"] == later and body["status"] == "done" and body["data"]["files"]
        assert {k: v for k, v in body.items() if k != "hash"} == h.get(later)
        wait_for(lambda: any(e.status == WebhookStatus.DELIVERED for e in events(h)))
        by_url = {e.url: e for e in events(h)}
        delivered = by_url[hanging.url]
        assert delivered.status == WebhookStatus.DELIVERED and delivered.attempts == 2
        assert delivered.event_type == "separation.done" and delivered.last_status == 200
        assert delivered.event_id.startswith("evt_") and delivered.delivered_at is not None
        wait_for(lambda: events(h)[0].last_error is not None)
        assert "timed out" in (events(h)[0].last_error or "")  # the black hole's: retried later, recorded
    finally:
        hanging.close()


def test_a_failed_job_is_reported_too(make_harness):
    h = make_harness(**QUICK_SENDERS)
    receiver = Receiver()
    try:
        token = h.user()
        hash_value = h.create(token, wav_bytes(stereo_mix(1.0)), webhook_url=receiver.url)["data"]["hash"]
        with h.ctx.db.session() as s:  # an input the engine cannot read: the job fails on its first claim
            job = s.scalar(select(Job).where(Job.hash == hash_value))
            assert job is not None
            garbage = h.settings.data_dir / "garbage.wav"
            garbage.write_bytes(b"not audio at all")
            h.ctx.storage.put_file(job.inputs["audiofile"]["key"], garbage)
        h.run_all()
        assert h.get(hash_value)["status"] == "failed"
        wait_for(lambda: receiver.posts)
        assert receiver.posts[0]["status"] == "failed" and receiver.posts[0]["hash"] == hash_value
        assert events(h)[0].event_type == "separation.failed"
    finally:
        receiver.close()


@pytest.mark.parametrize(
    "webhook_url, why",
    [
        ("file:///etc/passwd", "only http and https"),
        ("not a url", "only http and https"),
        ("http://127.0.0.1/hook", "private or reserved"),
        ("http://localhost:8080/hook", "private or reserved"),
        ("http://[::1]/hook", "private or reserved"),
        ("http://10.1.2.3/hook", "private or reserved"),
    ],
)
def test_create_refuses_a_bad_webhook_url_and_creates_nothing(harness, webhook_url, why):
    token = harness.user(credits=100)
    r = harness.create(token, wav_bytes(stereo_mix(1.0)), webhook_url=webhook_url)
    assert r["status"] == 400 and r["success"] is False
    assert "webhook_url" in r["data"]["message"] and why in r["data"]["message"]
    remote = harness.client.post(
        "/api/separation/create",
        data={"api_token": token, "sep_type": "55", "url": "https://example.com/a.wav", "webhook_url": webhook_url},
    )
    assert remote.status_code == 400 and why in remote.json()["data"]["message"]
    with harness.ctx.db.reader() as s:
        for table in (Job, RemoteJob, WebhookEvent):
            assert s.scalar(select(func.count()).select_from(table)) == 0, table
        assert s.scalars(select(CreditEntry.reason)).all() == ["grant"]  # nothing charged


def test_create_accepts_a_host_that_does_not_resolve_yet(harness):
    """Decided: accepted (DNS may be down for a moment); every delivery attempt checks the address again."""
    token = harness.user()
    r = harness.create(token, wav_bytes(stereo_mix(1.0)), webhook_url="https://receiver.invalid/hook")
    assert r["success"] is True


def test_private_webhooks_are_accepted_when_the_operator_allows_them(make_harness):
    h = make_harness(remote_allow_private=True)
    assert h.create(h.user(), wav_bytes(stereo_mix(1.0)), webhook_url="http://127.0.0.1:9/hook")["success"] is True


def test_an_address_refused_at_delivery_is_not_retried(make_harness):
    """A name that resolved to a public address at create may point at a private one later: refused at delivery,
    once, and nothing reaches the private address."""
    h = make_harness(webhook_poll_seconds=0.05, webhook_retry_seconds=0.05)
    receiver = Receiver()
    try:
        hash_value = h.create(h.user(), wav_bytes(stereo_mix(1.0)))["data"]["hash"]
        with h.ctx.db.session() as s:
            s.execute(update(Job).where(Job.hash == hash_value).values(webhook_url=receiver.url))
        h.run_all()
        wait_for(lambda: events(h) and events(h)[0].status == WebhookStatus.FAILED)
        (event,) = events(h)
        assert event.attempts == 1 and "private or reserved" in (event.last_error or "")
        assert receiver.requests == 0
    finally:
        receiver.close()


def test_a_leased_event_is_sent_by_one_sender_and_taken_over_after_a_crash(make_harness):
    h = make_harness(webhook_senders=0)  # no background senders: this test is the senders
    h.create(h.user(), wav_bytes(stereo_mix(1.0)), webhook_url="https://receiver.invalid/hook")
    h.run_all()
    db = h.ctx.db
    first = webhooks.claim_due(db, "sender-1", lease_seconds=60, max_attempts=3)
    assert first is not None and first.attempt == 1
    assert webhooks.claim_due(db, "sender-2", lease_seconds=60, max_attempts=3) is None  # leased: not twice
    with db.session() as s:  # sender-1 crashed: its lease runs out
        s.execute(update(WebhookEvent).values(lease_until=WebhookEvent.created_at))
    taken = webhooks.claim_due(db, "sender-2", lease_seconds=60, max_attempts=3)
    assert taken is not None and taken.id == first.id and taken.attempt == 2
    webhooks.record_delivered(db, first, "sender-1", {"late": True}, 200)  # a late report: ignored
    assert events(h)[0].status == WebhookStatus.SENDING and events(h)[0].worker == "sender-2"
    schedule = webhooks.RetrySchedule(max_attempts=3, first_wait=30, max_wait=3600, max_age=86400)
    webhooks.record_failure(db, taken, "sender-2", payload=None, error="boom", schedule=schedule)
    (event,) = events(h)
    assert event.status == WebhookStatus.PENDING and event.last_error == "boom" and event.worker is None
    assert event.next_attempt_at > event.updated_at  # 30 s later, doubled each further try
    assert webhooks.claim_due(db, "sender-3", lease_seconds=60, max_attempts=3) is None  # not due yet
