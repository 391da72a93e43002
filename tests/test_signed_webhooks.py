"""Signed webhooks: users' endpoints, Standard Webhooks signatures (checked with the `standardwebhooks` package on
every delivery), retries that outlast a receiver's outage and a server's restart, the delivery log, rotation, test
events, redelivery, the Quality Checker's event, and the routes' refusals."""

from __future__ import annotations

import base64
import http.server
import io
import itertools
import json
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import soundfile as sf
from sqlalchemy import func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from openmvsep.quality.synth import synthesize_dataset
from openmvsep.service import webhooks
from openmvsep.service.webhooks import signing
from openmvsep.settings import Settings
from openmvsep.store.db import Database
from openmvsep.store.models import Job, WebhookAttempt, WebhookEndpoint, WebhookEvent, WebhookSecret
from openmvsep.store.status import WebhookStatus

from conftest import Harness, make_settings, stereo_mix, wav_bytes
from processes import Server, free_port

QUICK = dict(
    remote_allow_private=True,  # the receivers of these tests live on 127.0.0.1
    webhook_timeout_seconds=1.0,
    webhook_retry_seconds=0.1,
    webhook_retry_max_seconds=0.3,
    webhook_poll_seconds=0.05,
)


# ---------------------------------------------------------------------------------------------- a real receiver


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def verify(self, secret: str) -> dict:
        """The body, once `standardwebhooks` has checked its signature with `secret` (raises otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    """An HTTP receiver on 127.0.0.1 that keeps every request's headers and exact body. It answers the statuses of
    `answers` in turn, then 200. Given a `port`, it listens there (a receiver coming back up)."""

    def __init__(self, port: int = 0, answers: tuple[int, ...] = ()) -> None:
        self.got: list[Received] = []
        pending = list(answers)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.got.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(pending.pop(0) if pending else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def wait_for(condition: Callable[[], object], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- helpers


def api(h: Harness, method: str, path: str, token: str | None, **fields) -> dict:
    """A call to a webhook route (the token as api_token, as on the account routes), with its HTTP status."""
    params = {**fields, **({"api_token": token} if token else {})}
    if method == "GET":
        r = h.client.get(path, params=params)
    else:
        r = h.client.post(path, data=params)
    assert r.headers["content-type"].startswith("application/json")
    return {"http": r.status_code, **r.json()}


def add_endpoint(h: Harness, token: str, url: str, **fields) -> dict:
    r = api(h, "POST", "/api/app/webhooks", token, url=url, **fields)
    assert r["http"] == 200 and r["success"] is True, r
    return r["data"]


def events(h: Harness) -> list[WebhookEvent]:
    with h.ctx.db.reader() as s:
        return list(s.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def delivered(h: Harness) -> bool:
    return all(e.status == WebhookStatus.DELIVERED for e in events(h))


def log_of(h: Harness, token: str, **query) -> list[dict]:
    r = api(h, "GET", "/api/app/webhooks/deliveries", token, **query)
    assert r["http"] == 200, r
    return r["data"]


_INPUTS = itertools.count()


def finished_job(h: Harness, token: str, **fields) -> str:
    # A new input each time: the same one would be a reused result, done at once without a run.
    hash_value = h.create(token, wav_bytes(stereo_mix(1.0, seed=next(_INPUTS))), **fields)["data"]["hash"]
    assert h.run_all() == 1
    return hash_value


# ---------------------------------------------------------------------------------------------- the scheme


def test_signatures_match_the_schemes_published_test_vector():
    """The vector of the Standard Webhooks repository: the package, and the headers this server sends, sign it
    exactly; with two secrets in force the header carries both and either verifies."""
    secret, msg_id, body = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        '{"test": 2432232314}',
    )
    at = datetime.fromtimestamp(1614265330, tz=timezone.utc)
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body) == expected
    headers = signing.signature_headers((secret,), msg_id, body.encode(), at)
    assert headers == {"webhook-id": msg_id, "webhook-timestamp": "1614265330", "webhook-signature": expected}

    other = signing.new_secret()
    assert other.startswith("whsec_") and len(base64.b64decode(other.removeprefix("whsec_"))) == 32
    now = datetime.now(timezone.utc).replace(microsecond=0)
    both = signing.signature_headers((other, secret), msg_id, body.encode(), now)
    assert both["webhook-signature"].count("v1,") == 2
    for key in (other, secret):
        assert Webhook(key).verify(body, both) == {"test": 2432232314}
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, both)


def test_the_default_schedule_retries_for_a_day():
    """10 s doubling up to 2 h, a last try exactly 24 h after the event, within the attempts allowed."""
    schedule = webhooks.RetrySchedule.of(Settings())
    queued = now = datetime(2026, 1, 1)
    attempts, waits = 1, []
    while (retry := schedule.next_attempt(attempts, queued, now)) is not None:
        waits.append((retry - now).total_seconds())
        now, attempts = retry, attempts + 1
    assert now == queued + timedelta(days=1)
    assert attempts <= schedule.max_attempts
    assert 10 <= waits[0] <= 11 and max(waits) <= 7200 * 1.1
    assert schedule.next_attempt(schedule.max_attempts, queued, queued) is None  # the attempts bound holds too


# ---------------------------------------------------------------------------------------------- deliveries


def test_endpoints_and_webhook_url_get_signed_events_and_the_url_keeps_mvseps_body(make_harness, receivers):
    h = make_harness(**QUICK)
    everything, failures_only, legacy, strangers = (receivers() for _ in range(4))
    token, other = h.user("a@example.com"), h.user("b@example.com")
    all_events = add_endpoint(h, token, everything.url)
    failed_only = add_endpoint(h, token, failures_only.url, event_types="separation.failed")
    stranger = add_endpoint(h, other, strangers.url)
    assert all_events["secret"].startswith("whsec_") and all_events["event_types"] is None
    assert failed_only["event_types"] == ["separation.failed"]

    hash_value = finished_job(h, token, webhook_url=legacy.url)
    wait_for(lambda: len(events(h)) == 2 and delivered(h))

    # The endpoint: signed with its own secret; the get answer with hash, type and timestamp added.
    (got,) = everything.got
    body = got.verify(all_events["secret"])
    assert body["type"] == "separation.done" and body["timestamp"].endswith("Z")
    assert {k: v for k, v in body.items() if k not in ("type", "timestamp")} == {
        "hash": hash_value,
        **h.get(hash_value),
    }
    assert got.headers["webhook-id"].startswith("evt_")
    with pytest.raises(WebhookVerificationError):
        got.verify(stranger["secret"])

    # The create's webhook_url: MVSep's body byte for byte as before, signed with the account secret.
    (mvsep,) = legacy.got
    assert mvsep.body == json.dumps({"hash": hash_value, **h.get(hash_value)}).encode()
    assert mvsep.headers["content-type"] == "application/json"
    account = api(h, "GET", "/api/app/webhooks/secret", token)["data"]["secret"]
    assert mvsep.verify(account)["hash"] == hash_value
    assert mvsep.headers["webhook-id"] != got.headers["webhook-id"]  # two events: one per receiver

    assert failures_only.got == [] and strangers.got == []  # a filter, and another user's endpoint

    overview = api(h, "GET", "/api/app/webhooks", token)["data"]
    assert [e["id"] for e in overview["endpoints"]] == [all_events["id"], failed_only["id"]]
    assert all(e["secret"].startswith("whsec_…") and len(e["secret"]) < 20 for e in overview["endpoints"])
    assert overview["signing_secret"] == signing.masked(account)
    assert {d["status"] for d in overview["deliveries"]} == {"delivered"}
    assert {d["hash"] for d in overview["deliveries"]} == {hash_value}


def test_a_failed_job_reaches_the_endpoints_that_want_failures(make_harness, receivers):
    h = make_harness(**QUICK)
    everything, failures_only = receivers(), receivers()
    token = h.user()
    secrets = [add_endpoint(h, token, r.url)["secret"] for r in (everything,)]
    secrets.append(add_endpoint(h, token, failures_only.url, event_types="separation.failed")["secret"])
    hash_value = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
    with h.ctx.db.session() as s:  # an input the engine cannot read: the job fails on its first claim
        job = s.scalar(select(Job).where(Job.hash == hash_value))
        garbage = h.settings.data_dir / "garbage.wav"
        garbage.write_bytes(b"not audio at all")
        h.ctx.storage.put_file(job.inputs["audiofile"]["key"], garbage)
    h.run_all()
    wait_for(lambda: len(events(h)) == 2 and delivered(h))
    for receiver, secret in zip((everything, failures_only), secrets):
        (got,) = receiver.got
        body = got.verify(secret)
        assert body["type"] == "separation.failed" and body["status"] == "failed" and body["hash"] == hash_value


def test_a_receiver_that_is_down_gets_the_event_later_and_the_log_shows_every_attempt(make_harness, receivers):
    h = make_harness(**QUICK)
    port = free_port()  # nothing listens there yet: every attempt is refused
    token = h.user()
    endpoint = add_endpoint(h, token, f"http://127.0.0.1:{port}/hook")
    hash_value = finished_job(h, token)
    wait_for(lambda: len(log_of(h, token)) >= 3)

    receiver = receivers(port=port)  # the receiver comes back
    wait_for(lambda: delivered(h))
    (got,) = receiver.got
    assert got.verify(endpoint["secret"])["hash"] == hash_value

    (event,) = events(h)
    attempts = log_of(h, token, event_id=event.event_id)
    assert len(attempts) == event.attempts and [a["attempt"] for a in attempts] == list(range(event.attempts, 0, -1))
    last, *earlier = attempts  # newest first
    assert last["status_code"] == 200 and last["error"] is None and last["latency_ms"] >= 0
    for a in earlier:
        assert a["status_code"] is None and a["error"] and a["latency_ms"] is not None
        assert a["url"] == endpoint["url"] and a["type"] == "separation.done" and a["endpoint_id"] == endpoint["id"]
    assert log_of(h, token, endpoint_id=str(endpoint["id"])) == attempts
    assert log_of(h, token, limit="1") == attempts[:1] and log_of(h, token, start="1") == attempts[1:]


def test_a_receivers_error_answers_are_logged_and_410_disables_its_endpoint(make_harness, receivers):
    h = make_harness(**QUICK)
    flaky, gone = receivers(answers=(500, 503)), receivers(answers=(410,))
    token = h.user()
    flaky_endpoint = add_endpoint(h, token, flaky.url)
    gone_endpoint = add_endpoint(h, token, gone.url)
    finished_job(h, token)
    wait_for(lambda: {e.status for e in events(h)} == {WebhookStatus.DELIVERED, WebhookStatus.FAILED})
    assert [a["status_code"] for a in log_of(h, token, endpoint_id=str(flaky_endpoint["id"]))] == [200, 503, 500]
    assert [a["error"] for a in log_of(h, token, endpoint_id=str(flaky_endpoint["id"]))][1:] == [
        "the receiver answered HTTP 503",
        "the receiver answered HTTP 500",
    ]
    assert len(gone.got) == 1  # gone: no retry
    listed = {e["id"]: e for e in api(h, "GET", "/api/app/webhooks", token)["data"]["endpoints"]}
    assert listed[gone_endpoint["id"]]["disabled"] is True and listed[flaky_endpoint["id"]]["disabled"] is False
    finished_job(h, token)  # a disabled endpoint gets no new events
    wait_for(lambda: len(events(h)) == 3 and events(h)[-1].status == WebhookStatus.DELIVERED)
    assert len(gone.got) == 1


def test_rotation_signs_with_the_new_secret_and_the_old_one_during_the_grace(make_harness, receivers):
    h = make_harness(**QUICK)
    receiver = receivers()
    token = h.user()
    endpoint = add_endpoint(h, token, receiver.url)
    rotated = api(h, "POST", "/api/app/webhooks/rotate", token, id=str(endpoint["id"]))
    assert rotated["http"] == 200 and rotated["data"]["id"] == endpoint["id"]
    new = rotated["data"]["secret"]
    assert new != endpoint["secret"] and rotated["data"]["previous_secret_until"] is not None
    assert api(h, "POST", "/api/app/webhooks/test", token, id=str(endpoint["id"]))["http"] == 200
    wait_for(lambda: receiver.got)
    assert receiver.got[0].verify(new)["type"] == "webhook.test"
    assert receiver.got[0].verify(endpoint["secret"])["type"] == "webhook.test"  # the grace: both sign

    account = api(h, "GET", "/api/app/webhooks/secret", token)["data"]["secret"]
    again = api(h, "POST", "/api/app/webhooks/rotate", token, id="account")["data"]
    assert again["id"] == "account" and again["secret"] != account
    assert api(h, "GET", "/api/app/webhooks/secret", token)["data"]["secret"] == again["secret"]


def test_without_a_grace_the_old_secret_stops_signing_at_once(make_harness, receivers):
    h = make_harness(**QUICK, webhook_secret_grace_seconds=0)
    receiver = receivers()
    token = h.user()
    old = api(h, "GET", "/api/app/webhooks/secret", token)["data"]["secret"]  # made on first need
    new = api(h, "POST", "/api/app/webhooks/rotate", token, id="account")["data"]["secret"]
    finished_job(h, token, webhook_url=receiver.url)
    wait_for(lambda: receiver.got)
    (got,) = receiver.got
    assert got.verify(new)["status"] == "done" and got.headers["webhook-signature"].count("v1,") == 1
    with pytest.raises(WebhookVerificationError):
        got.verify(old)


def test_a_test_event_and_its_redelivery(make_harness, receivers):
    h = make_harness(**QUICK)
    receiver = receivers()
    token = h.user()
    endpoint = add_endpoint(h, token, receiver.url, event_types="quality_checker.scored")
    sent = api(h, "POST", "/api/app/webhooks/test", token, id=str(endpoint["id"]))["data"]
    assert sent["type"] == "webhook.test" and sent["status"] == "pending"
    wait_for(lambda: receiver.got)
    first = receiver.got[0].verify(endpoint["secret"])
    assert first["type"] == "webhook.test" and first["data"]["endpoint_id"] == endpoint["id"]

    again = api(h, "POST", "/api/app/webhooks/redeliver", token, event_id=sent["event_id"])
    assert again["http"] == 200 and again["data"]["status"] == "pending"
    wait_for(lambda: len(receiver.got) == 2 and delivered(h))
    second = receiver.got[1]
    assert second.verify(endpoint["secret"]) == first
    assert second.headers["webhook-id"] == receiver.got[0].headers["webhook-id"] == sent["event_id"]
    assert [a["attempt"] for a in log_of(h, token, event_id=sent["event_id"])] == [2, 1]


def test_events_wait_out_a_server_restart(tmp_path, receivers):
    """A real `openmvsep serve`, killed (SIGKILL) while its receiver is down with events pending; restarted once
    the receiver is back, it delivers them, signed; the log holds every attempt of both lives."""
    port = free_port()
    env = dict(
        workers=0,
        OPENMVSEP_REMOTE_ALLOW_PRIVATE=1,
        OPENMVSEP_RATE_LIMIT_PER_MINUTE=0,
        OPENMVSEP_QC_DEFAULT_DATASET_TRACKS=0,
        OPENMVSEP_WEBHOOK_POLL_SECONDS=0.05,
        OPENMVSEP_WEBHOOK_RETRY_SECONDS=0.2,
        OPENMVSEP_WEBHOOK_RETRY_MAX_SECONDS=0.5,
        OPENMVSEP_WEBHOOK_TIMEOUT_SECONDS=1,
        OPENMVSEP_WEBHOOK_LEASE_SECONDS=1,  # an attempt the kill cut short is taken over soon after the restart
    )
    server = Server(tmp_path / "data", **env)

    def call(method: str, path: str = "", **fields) -> dict:
        """A webhook route of whichever server runs now (the restarted one listens on another port)."""
        url, fields = f"{server.url}/api/app/webhooks{path}", {"api_token": token, **fields}
        r = requests.get(url, params=fields) if method == "GET" else requests.post(url, data=fields)
        return r.json()["data"]

    try:
        created = server.cli("user", "create", "--email", "a@example.com", "--password", "password123")
        token = created.strip().splitlines()[-1]
        endpoint = call("POST", url=f"http://127.0.0.1:{port}/hook")
        sent = [call("POST", "/test", id=endpoint["id"]) for _ in range(2)]
        wait_for(lambda: len(call("GET", "/deliveries")) >= 4)  # both refused, twice at least
        server.proc.kill()  # no shutdown: whatever the senders held stays as the kill left it
        server.proc.wait()
    except BaseException:
        server.stop()
        raise
    logged_before = server_log_rows(tmp_path / "data")
    receiver = receivers(port=port)
    server = Server(tmp_path / "data", **env)
    try:
        wait_for(lambda: len(receiver.got) == 2)
        assert {got.verify(endpoint["secret"])["type"] for got in receiver.got} == {"webhook.test"}
        assert {got.headers["webhook-id"] for got in receiver.got} == {e["event_id"] for e in sent}
        wait_for(lambda: [d["status"] for d in call("GET")["deliveries"]] == ["delivered", "delivered"])
        attempts = call("GET", "/deliveries")
        assert len(attempts) >= logged_before + 2 and logged_before >= 4
        assert sorted(a["status_code"] for a in attempts if a["status_code"]) == [200, 200]
        assert all(a["error"] for a in attempts if not a["status_code"])
    finally:
        server.stop()


def server_log_rows(data_dir: Path) -> int:
    """The delivery log's rows, read from the stopped server's database file."""
    db = Database(f"sqlite:///{data_dir / 'openmvsep.db'}")
    try:
        with db.reader() as s:
            return s.scalar(select(func.count()).select_from(WebhookAttempt)) or 0
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------------------- Quality Checker


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return synthesize_dataset(tmp_path_factory.mktemp("qc") / "synth", tracks=2, seconds=1.0)


def perfect_vocals(dataset: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for song in sorted(p for p in dataset.iterdir() if p.is_dir()):
            data, rate = sf.read(song / "vocals.wav", dtype="int16", always_2d=True)
            wav = io.BytesIO()
            sf.write(wav, data, rate, subtype="PCM_16", format="WAV")
            z.writestr(f"{song.name}_vocals.wav", wav.getvalue())
    return buf.getvalue()


def test_a_quality_checker_entry_scored_is_an_event(tmp_path, tiny_dataset, receivers):
    h = Harness(make_settings(tmp_path, **QUICK))
    try:
        h.ctx.quality.register_dataset(tiny_dataset)
        receiver, separations = receivers(), receivers()
        token = h.user()
        endpoint = add_endpoint(h, token, receiver.url, event_types="quality_checker.scored")
        add_endpoint(h, token, separations.url, event_types="separation.done,separation.failed")
        r = h.client.post(
            "/api/quality_checker/add",
            data={"api_token": token, "algo_name": "Perfect", "dataset_type": "0", "password": "pw-12345"},
            files={"zipfile": ("entry.zip", perfect_vocals(tiny_dataset), "application/zip")},
        )
        entry_id = r.json()["data"]["id"]
        h.run_all()  # the SDR claim, then the secondary metrics: one event, when the leaderboard has it
        wait_for(lambda: receiver.got and delivered(h))
        (got,) = receiver.got
        body = got.verify(endpoint["secret"])
        assert body["type"] == "quality_checker.scored" and body["success"] is True
        assert body["data"]["id"] == entry_id and body["data"]["sdr_vocals"] > 50  # a perfect estimate
        assert len(events(h)) == 1 and separations.got == []
    finally:
        h.close()


# ---------------------------------------------------------------------------------------------- refusals


def table_counts(h: Harness) -> tuple[int, ...]:
    with h.ctx.db.reader() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t))
            for t in (WebhookEndpoint, WebhookSecret, WebhookEvent, WebhookAttempt)
        )


def endpoint_rows(h: Harness) -> list[tuple]:
    with h.ctx.db.reader() as s:
        return [
            (e.id, e.url, e.secret, e.event_types, e.disabled)
            for e in s.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
        ]


def test_another_users_endpoints_and_events_are_out_of_reach(make_harness, receivers):
    h = make_harness(**QUICK)
    receiver = receivers()
    owner, intruder = h.user("owner@example.com"), h.user("intruder@example.com")
    endpoint = add_endpoint(h, owner, receiver.url)
    sent = api(h, "POST", "/api/app/webhooks/test", owner, id=str(endpoint["id"]))["data"]
    wait_for(lambda: delivered(h) and receiver.got)
    before, rows = table_counts(h), endpoint_rows(h)

    assert api(h, "GET", "/api/app/webhooks", intruder)["data"] == {
        "endpoints": [],
        "signing_secret": None,
        "deliveries": [],
    }
    assert log_of(h, intruder) == []
    eid = str(endpoint["id"])
    for path, fields in [
        ("/api/app/webhooks/delete", {"id": eid}),
        ("/api/app/webhooks/rotate", {"id": eid}),
        ("/api/app/webhooks/test", {"id": eid}),
        ("/api/app/webhooks/update", {"id": eid, "url": "http://127.0.0.1:9/elsewhere"}),
        ("/api/app/webhooks/redeliver", {"event_id": sent["event_id"]}),
    ]:
        r = api(h, "POST", path, intruder, **fields)
        assert r["http"] == 404 and r["success"] is False and "not found" in r["data"]["message"], (path, r)
    for query in ({"event_id": sent["event_id"]}, {"endpoint_id": eid}):
        r = api(h, "GET", "/api/app/webhooks/deliveries", intruder, **query)
        assert r["http"] == 404 and r["data"]["message"] == r["message"]
    assert table_counts(h) == before and endpoint_rows(h) == rows
    assert len(receiver.got) == 1

    # The owner may do all of it: update, then delete (its events and their log go with it).
    changed = api(h, "POST", "/api/app/webhooks/update", owner, id=eid, event_types="separation.done", disabled="1")
    assert changed["data"]["event_types"] == ["separation.done"] and changed["data"]["disabled"] is True
    assert api(h, "POST", "/api/app/webhooks/delete", owner, id=eid)["http"] == 200
    assert table_counts(h)[0] == 0 and table_counts(h)[2:] == (0, 0)


@pytest.mark.parametrize(
    "path, fields, status, why",
    [
        ("/api/app/webhooks", {"url": "file:///etc/passwd"}, 400, "only http and https"),
        ("/api/app/webhooks", {"url": "not a url"}, 400, "only http and https"),
        ("/api/app/webhooks", {"url": "http://127.0.0.1/hook"}, 400, "private or reserved"),
        ("/api/app/webhooks", {"url": "http://localhost:8080/hook"}, 400, "private or reserved"),
        ("/api/app/webhooks", {"url": "http://[::1]/hook"}, 400, "private or reserved"),
        ("/api/app/webhooks", {"url": "http://10.1.2.3/hook"}, 400, "private or reserved"),
        ("/api/app/webhooks", {"url": "https://x.invalid/" + "a" * 5000}, 400, "too long"),
        ("/api/app/webhooks", {}, 400, "url field is required"),
        ("/api/app/webhooks", {"url": "https://x.invalid/a", "event_types": "separation.nope"}, 400, "Unknown event"),
        ("/api/app/webhooks", {"url": "https://receiver.invalid/hook"}, 400, "already"),  # the one there
        ("/api/app/webhooks/delete", {"id": "999"}, 404, "not found"),
        ("/api/app/webhooks/delete", {"id": "abc"}, 400, "must be an integer"),
        ("/api/app/webhooks/delete", {}, 400, "id field is required"),
        ("/api/app/webhooks/delete", {"id": "99999999999999999999999"}, 400, "out of range"),
        ("/api/app/webhooks/rotate", {"id": "999"}, 404, "not found"),
        ("/api/app/webhooks/test", {"id": "999"}, 404, "not found"),
        ("/api/app/webhooks/update", {"id": "ENDPOINT", "url": "http://10.0.0.1/x"}, 400, "private or reserved"),
        ("/api/app/webhooks/update", {"id": "ENDPOINT", "disabled": "maybe"}, 400, "must be 1 or 0"),
        ("/api/app/webhooks/update", {"id": "ENDPOINT", "event_types": "x"}, 400, "Unknown event"),
        ("/api/app/webhooks/redeliver", {"event_id": "evt_unknown"}, 404, "not found"),
        ("/api/app/webhooks/redeliver", {"event_id": "EVENT"}, 400, "being delivered"),  # still pending
        ("/api/app/webhooks/test", {"id": "DISABLED"}, 400, "disabled"),
        ("/api/app/webhooks/redeliver", {}, 400, "event_id field is required"),
    ],
)
def test_bad_input_gets_mvseps_error_and_changes_nothing(make_harness, path, fields, status, why):
    h = make_harness(webhook_senders=0)  # nothing is sent: every row stays as the refusal left it
    token = h.user()
    existing = add_endpoint(h, token, "https://receiver.invalid/hook")  # a host that never resolves: accepted
    disabled = add_endpoint(h, token, "https://receiver.invalid/off")
    api(h, "POST", "/api/app/webhooks/update", token, id=str(disabled["id"]), disabled="1")
    pending = api(h, "POST", "/api/app/webhooks/test", token, id=str(existing["id"]))["data"]
    named = {"ENDPOINT": str(existing["id"]), "DISABLED": str(disabled["id"]), "EVENT": pending["event_id"]}
    fields = {k: named.get(v, v) for k, v in fields.items()}
    before, rows = table_counts(h), endpoint_rows(h)
    r = api(h, "POST", path, token, **fields)
    assert r["http"] == status and r["success"] is False, r
    assert why in r["data"]["message"] and r["message"] == r["data"]["message"] == r["errors"][0]
    assert table_counts(h) == before and endpoint_rows(h) == rows


@pytest.mark.parametrize("token", ["NotARealToken0000000000000000x", None])
@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/app/webhooks"),
        ("POST", "/api/app/webhooks"),
        ("POST", "/api/app/webhooks/update"),
        ("POST", "/api/app/webhooks/delete"),
        ("POST", "/api/app/webhooks/rotate"),
        ("POST", "/api/app/webhooks/test"),
        ("POST", "/api/app/webhooks/redeliver"),
        ("GET", "/api/app/webhooks/secret"),
        ("GET", "/api/app/webhooks/deliveries"),
    ],
)
def test_a_bad_or_missing_token_is_400_and_changes_nothing(harness, method, path, token):
    before = table_counts(harness)
    r = api(harness, method, path, token, url="https://receiver.invalid/hook", id="1", event_id="evt_x")
    assert r["http"] == 400 and r["success"] is False and r["data"]["message"]
    assert table_counts(harness) == before


def test_an_account_has_at_most_the_endpoints_its_setting_allows(make_harness):
    h = make_harness(webhook_endpoints_per_user=2)
    token = h.user()
    for n in range(2):
        add_endpoint(h, token, f"https://receiver.invalid/{n}")
    r = api(h, "POST", "/api/app/webhooks", token, url="https://receiver.invalid/3")
    assert r["http"] == 400 and "at most 2 endpoints" in r["data"]["message"]
    assert table_counts(h)[0] == 2
