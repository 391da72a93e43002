"""Idempotency keys on separation/create (uploads and URL inputs) and quality_checker/add: a repeat gets the first
answer and creates and charges nothing; another request under the same key is refused with 409; two requests
racing with one key against a real server (SQLite and PostgreSQL) make one job and one charge."""

from __future__ import annotations

import threading
import zipfile
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from openmvsep.quality.synth import synthesize_dataset
from openmvsep.runner.housekeeping import Housekeeping
from openmvsep.store.db import Database, utcnow
from openmvsep.store.models import CreditEntry, IdempotencyKey, Job, QcEntry, RemoteJob

from conftest import Harness, stereo_mix, wav_bytes
from processes import Server, postgres_database

SONG = wav_bytes(stereo_mix(1.0))
FIELDS = {"sep_type": "55", "add_opt1": "dsp", "output_format": "1"}


def post_create(h: Harness, token: str, key: str | None, audio: bytes = SONG, *, field: str | None = None, **extra):
    data = {**FIELDS, "api_token": token, **extra}
    if field is not None:
        data["idempotency_key"] = field
    headers = {"Idempotency-Key": key} if key is not None else {}
    return h.client.post(
        "/api/separation/create",
        data=data,
        files={"audiofile": ("song.wav", audio, "audio/wav")},
        headers=headers,
    )


def count(h: Harness, table, *where) -> int:
    with h.ctx.db.reader() as s:
        return int(s.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def charges(h: Harness) -> list[int]:
    with h.ctx.db.reader() as s:
        return [e.delta for e in s.scalars(select(CreditEntry).where(CreditEntry.reason == "charge"))]


def test_a_create_sent_twice_with_one_key_makes_one_job_and_one_charge(harness):
    token = harness.user(credits=100, premium=True)
    first = post_create(harness, token, "key-1")
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = post_create(harness, token, "key-1")
    assert again.status_code == 200
    assert again.content == first.content  # the first answer, byte for byte
    assert again.headers["idempotent-replayed"] == "true"
    assert count(harness, Job) == 1 and charges(harness) == [-1]
    # The job is the user's one and only; a new key makes a new job (premium users may have several).
    other = post_create(harness, token, "key-2")
    assert other.status_code == 200 and other.json()["data"]["hash"] != first.json()["data"]["hash"]
    assert count(harness, Job) == 2 and charges(harness) == [-1, -1]


def test_the_key_may_come_as_a_form_field_and_a_repeat_is_answered_even_past_the_job_limit(harness):
    """A free account may have one active job: the repeat is answered with the first job, not refused by the limit
    the first job now fills."""
    token = harness.user()
    first = post_create(harness, token, None, field="form-key")
    assert first.status_code == 200, first.text
    again = post_create(harness, token, "form-key")  # the same key by header: the same request
    assert again.status_code == 200 and again.content == first.content
    assert count(harness, Job) == 1
    refused = post_create(harness, token, None)  # no key: a second job, which the limit refuses
    assert refused.status_code == 400 and "in progress" in refused.json()["message"]


def test_the_same_key_with_another_request_is_refused_and_changes_nothing(harness):
    token = harness.user(credits=100, premium=True)
    first = post_create(harness, token, "k")
    assert first.status_code == 200
    for other in (
        post_create(harness, token, "k", output_format="0"),  # another field
        post_create(harness, token, "k", wav_bytes(stereo_mix(1.0, seed=7))),  # another file of the same name
        post_create(harness, token, "k", is_demo="1"),  # a field the first did not send
    ):
        assert other.status_code == 409
        body = other.json()
        assert body["success"] is False and "different request" in body["message"]
        assert body["errors"] == [body["message"]] and body["data"] == {"message": body["message"]}
    assert count(harness, Job) == 1 and charges(harness) == [-1]
    assert post_create(harness, token, "k").content == first.content


def test_keys_belong_to_one_account(harness):
    a = harness.user("a@example.com", credits=10, premium=True)
    b = harness.user("b@example.com", credits=10, premium=True)
    first = post_create(harness, a, "shared")
    second = post_create(harness, b, "shared")
    assert first.status_code == second.status_code == 200
    assert first.json()["data"]["hash"] != second.json()["data"]["hash"]
    assert count(harness, Job) == 2


def test_bad_keys_are_refused_before_anything_is_done(harness):
    token = harness.user()
    for key, field, message in (
        ("a" * 256, None, "at most 255"),
        (None, "é-key", "printable ASCII"),  # a header is ASCII on the wire; a form field need not be
        ("one", "two", "differ"),
    ):
        r = post_create(harness, token, key, field=field)
        assert r.status_code == 400 and message in r.json()["message"], r.text
    assert count(harness, Job) == 0


def test_a_refusal_is_not_remembered(harness):
    """Only an answer that created something is kept: a refused request sent again later is judged afresh."""
    token = harness.user()
    busy = post_create(harness, token, None)
    assert busy.status_code == 200
    refused = post_create(harness, token, "after-limit", wav_bytes(stereo_mix(1.0, seed=3)))
    assert refused.status_code == 400
    assert harness.run_all() == 1  # the first job ends: the limit passes
    created = post_create(harness, token, "after-limit", wav_bytes(stereo_mix(1.0, seed=3)))
    assert created.status_code == 200 and "idempotent-replayed" not in created.headers
    assert count(harness, Job) == 2


def test_an_expired_key_makes_a_new_job_and_housekeeping_forgets_it(make_harness):
    h = make_harness(idempotency_hours=24)
    token = h.user(credits=10, premium=True)
    first = post_create(h, token, "old")
    with h.ctx.db.session() as s:
        s.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
    again = post_create(h, token, "old")
    assert again.status_code == 200 and again.json()["data"]["hash"] != first.json()["data"]["hash"]
    assert count(h, Job) == 2 and count(h, IdempotencyKey) == 1  # the expired row made way for the new one
    with h.ctx.db.session() as s:
        s.execute(update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
    Housekeeping(h.ctx.db, h.ctx.storage, h.settings).run_once()
    assert count(h, IdempotencyKey) == 0


def test_keys_are_ignored_when_switched_off(make_harness):
    h = make_harness(idempotency_hours=0)
    token = h.user(credits=10, premium=True)
    assert post_create(h, token, "k").status_code == post_create(h, token, "k").status_code == 200
    assert count(h, Job) == 2 and count(h, IdempotencyKey) == 0


def test_a_url_create_sent_twice_makes_one_download(harness):
    token = harness.user(credits=10, premium=True)
    data = {**FIELDS, "api_token": token, "url": "https://example.com/song.wav", "remote_type": "direct"}
    first = harness.client.post("/api/separation/create", data=data, headers={"Idempotency-Key": "url-key"})
    assert first.status_code == 200, first.text
    assert "get-remote" in first.json()["data"]["link"]
    again = harness.client.post("/api/separation/create", data=data, headers={"Idempotency-Key": "url-key"})
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    other = harness.client.post(
        "/api/separation/create",
        data={**data, "url": "https://example.com/b.wav"},
        headers={"Idempotency-Key": "url-key"},
    )
    assert other.status_code == 409
    assert count(harness, RemoteJob) == 1 and count(harness, Job) == 0


def test_a_quality_checker_submission_sent_twice_makes_one_entry(harness, tmp_path):
    dataset_dir = synthesize_dataset(tmp_path / "synth", tracks=1, seconds=1.0)
    dataset = harness.ctx.quality.register_dataset(dataset_dir)
    zip_path = tmp_path / "sub.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        for song in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
            z.write(song / "mixture.wav", f"{song.name}_vocals.wav")
    token = harness.user()

    def add(key: str, algo_name: str = "mix as vocals"):
        return harness.client.post(
            "/api/quality_checker/add",
            data={"api_token": token, "algo_name": algo_name, "dataset_type": str(dataset.dataset_type)},
            files={"zipfile": ("sub.zip", zip_path.read_bytes(), "application/zip")},
            headers={"Idempotency-Key": key},
        )

    first = add("qc-key")
    assert first.status_code == 200, first.text
    again = add("qc-key")
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert add("qc-key", "another name").status_code == 409
    assert count(harness, QcEntry) == 1
    assert [k for k, _ in harness.ctx.storage.list("qc")] == [f"qc/{first.json()['data']['id']}.zip"]


# ---------------------------------------------------------------------------------------------- racing


def _race(url: str, token: str, key: str, racers: int) -> list[httpx.Response]:
    """`racers` threads send the same create at once (released together by a barrier)."""
    barrier = threading.Barrier(racers)
    answers: list[httpx.Response | BaseException] = [RuntimeError("no answer")] * racers

    def send(i: int) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            try:
                answers[i] = client.post(
                    f"{url}/api/separation/create",
                    data={**FIELDS, "api_token": token},
                    files={"audiofile": ("song.wav", SONG, "audio/wav")},
                    headers={"Idempotency-Key": key},
                )
            except BaseException as e:  # reported below, on the test's thread
                answers[i] = e

    threads = [threading.Thread(target=send, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a in answers:
        if isinstance(a, BaseException):
            raise a
    return answers  # type: ignore[return-value]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_env(request):
    if request.param == "sqlite":
        yield {}
    else:
        with postgres_database() as url:
            yield {"OPENMVSEP_DATABASE_URL": url}


def test_racing_creates_with_one_key_make_one_job_and_one_charge(tmp_path, database_env):
    """Against `openmvsep serve` (its requests run on threads of their own): each round, four requests with one key
    are released at once. A free account (one active job allowed) and a premium one (charged) each get one job
    per key, and every racer the same answer."""
    server = Server(tmp_path / "data", workers=0, OPENMVSEP_RATE_LIMIT_PER_MINUTE=0, **database_env)
    try:
        tokens = {}
        for name, extra in (("free", ()), ("premium", ("--credits", "100", "--premium"))):
            out = server.cli("user", "create", "--email", f"{name}@example.com", "--password", "password123", *extra)
            tokens[name] = out.strip().splitlines()[-1]
        for name, token in tokens.items():
            for round_ in range(3):
                answers = _race(server.url, token, f"{name}-{round_}", racers=4)
                assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
                assert len({a.content for a in answers}) == 1  # every racer: the one job's answer
                assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 3
                if name == "free":  # its one job must end before its next key can make another
                    cancelled = httpx.post(
                        f"{server.url}/api/separation/cancel",
                        data={"api_token": token, "hash": answers[0].json()["data"]["hash"]},
                    )
                    assert cancelled.status_code == 200, cancelled.text
        sqlite = f"sqlite:///{(tmp_path / 'data' / 'openmvsep.db').resolve()}"
        db = Database(database_env.get("OPENMVSEP_DATABASE_URL") or sqlite)
        try:
            with db.reader() as s:
                assert s.scalar(select(func.count()).select_from(Job)) == 6
                deltas = list(s.scalars(select(CreditEntry.delta).where(CreditEntry.reason == "charge")))
                assert deltas == [-1, -1, -1]  # the premium account's three jobs, once each
                assert s.scalar(select(func.count()).select_from(IdempotencyKey)) == 6
        finally:
            db.dispose()
    finally:
        server.stop()
