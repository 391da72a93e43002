"""Accounts, credits, plans, queue order, limits and cancel: each rule of the service core."""

from __future__ import annotations

from sqlalchemy import func, select

from openmvsep.service.jobs import credits_for
from openmvsep.store.models import CreditEntry, Job, User, WorkItem

from conftest import stereo_mix, wav_bytes

SONG = wav_bytes(stereo_mix(2.0))


def balance(h, token) -> int:
    return h.client.get("/api/app/user", params={"api_token": token}).json()["data"]["premium_minutes"]


def ledger(h, token) -> list[tuple[int, str]]:
    with h.ctx.db.reader() as s:
        uid = s.scalar(select(User.id).where(User.api_token == token))
        return [
            (e.delta, e.reason)
            for e in s.scalars(select(CreditEntry).where(CreditEntry.user_id == uid).order_by(CreditEntry.id))
        ]


def test_credit_formula():
    assert credits_for(10, 1) == 1  # floor(0.16) = 0 -> 1
    assert credits_for(60, 1) == 1
    assert credits_for(179, 1) == 2
    assert credits_for(180, 2) == 6
    assert credits_for(90, 4, 1.5) == 9


def test_register_login_and_token(harness):
    r = harness.client.post(
        "/api/app/register",
        data={
            "name": "Ann",
            "email": "ann@example.com",
            "password": "secret-pass",
            "password_confirmation": "secret-pass",
        },
    )
    # No mail is sent with registration=open, so the answer says what happened instead of MVSep's words.
    assert r.json() == {"success": True, "message": "Account created for ann@example.com; you can log in now"}
    again = harness.client.post(
        "/api/app/register",
        data={
            "name": "Ann",
            "email": "ann@example.com",
            "password": "secret-pass",
            "password_confirmation": "secret-pass",
        },
    )
    assert again.status_code == 400 and again.json()["message"] == {"email": ["The email has already been taken."]}
    mismatch = harness.client.post(
        "/api/app/register",
        data={"name": "B", "email": "b@example.com", "password": "secret-pass", "password_confirmation": "x"},
    )
    assert "password" in mismatch.json()["message"]
    bad = harness.client.post("/api/app/login", data={"email": "ann@example.com", "password": "wrong-pass"})
    assert bad.status_code == 400 and bad.json()["success"] is False
    good = harness.client.post("/api/app/login", data={"email": "ann@example.com", "password": "secret-pass"}).json()
    token = good["data"]["api_token"]
    assert len(token) == 30 and token.isalnum()
    with harness.ctx.db.reader() as s:
        stored = s.scalar(select(User.password_hash).where(User.email == "ann@example.com"))
    assert stored.startswith("$argon2") and "secret-pass" not in stored
    assert harness.client.get("/api/app/user", params={"api_token": token}).json()["data"]["email"] == "ann@example.com"


def test_premium_job_is_charged_and_cancel_refunds(harness):
    token = harness.user(credits=10, premium=True)
    created = harness.create(token, SONG)
    assert balance(harness, token) == 9  # 2 s × 1 / 60 -> the minimum of 1 credit
    assert ledger(harness, token) == [(10, "grant"), (-1, "charge")]
    r = harness.client.post("/api/separation/cancel", data={"api_token": token, "hash": created["data"]["hash"]})
    assert r.json()["success"] is True
    assert balance(harness, token) == 10
    assert ledger(harness, token)[-1] == (1, "refund")
    assert harness.get(created["data"]["hash"])["status"] == "failed"
    # nothing left to run, and the input is gone
    assert harness.run_all() == 0
    with harness.ctx.db.reader() as s:
        job = s.scalar(select(Job))
    assert not harness.ctx.storage.exists(job.inputs["audiofile"]["key"])
    history = harness.client.get("/api/app/separation_history", params={"api_token": token}).json()["data"]
    assert history[0]["job_exists"] is False and history[0]["credits"] is None


def test_cancel_only_while_waiting(harness):
    token = harness.user()
    created = harness.create(token, SONG)
    harness.run_all()
    r = harness.client.post("/api/separation/cancel", data={"api_token": token, "hash": created["data"]["hash"]})
    assert r.status_code == 400 and "waiting" in r.json()["message"]
    other = harness.user("other@example.com")
    r = harness.client.post("/api/separation/cancel", data={"api_token": other, "hash": created["data"]["hash"]})
    assert r.status_code == 400  # not yours: looks like it does not exist


def test_free_user_has_one_active_job_premium_unlimited(harness):
    free = harness.user("free@example.com")
    assert harness.create(free, SONG)["success"] is True
    second = harness.create(free, SONG)
    assert second["status"] == 400 and second["success"] is False and "in progress" in second["message"]
    harness.run_all()
    assert harness.create(free, SONG)["success"] is True  # the first finished: a slot is free again
    rich = harness.user("rich@example.com", credits=100, premium=True)
    for _ in range(3):
        assert harness.create(rich, SONG)["success"] is True


def test_premium_only_algorithm_refused_for_free_accounts(harness):
    token = harness.user()
    r = harness.create(token, SONG, sep_type="26", add_opt1="")
    assert r["status"] == 400
    assert r["errors"] == ["Seperation type is unavailable until you purchase premium membership"]


def test_queue_order_premium_first_then_fifo(harness):
    free_a = harness.user("a@example.com")
    free_b = harness.user("b@example.com")
    prem = harness.user("p@example.com", credits=100, premium=True)
    a = harness.create(free_a, SONG)["data"]["hash"]
    b = harness.create(free_b, SONG)["data"]["hash"]
    p = harness.create(prem, SONG)["data"]["hash"]
    assert harness.get(p)["data"].items() >= {"queue_count": 1, "current_order": 1}.items()
    assert harness.get(a)["data"].items() >= {"queue_count": 2, "current_order": 2}.items()
    assert harness.get(b)["data"].items() >= {"queue_count": 2, "current_order": 3}.items()
    q = harness.client.get("/api/app/queue", params={"api_token": free_a}).json()
    assert q["queue"] == {"in_process": 0, "premium": 1, "registered": 2, "unregistered": 0}
    assert q["plan"] == {"plan": "registered", "queue": 2}
    order = []
    while harness.worker.run_next():
        with harness.ctx.db.reader() as s:
            order.append(
                s.scalar(select(Job.hash).where(Job.status == "done").order_by(Job.finished_at.desc(), Job.id.desc()))
            )
    assert order == [p, a, b]


def test_disable_premium_stops_spending(harness):
    token = harness.user(credits=5, premium=True)
    harness.client.post("/api/app/disable_premium", data={"api_token": token})
    harness.create(token, SONG)
    assert balance(harness, token) == 5
    with harness.ctx.db.reader() as s:
        assert s.scalar(select(Job.plan)) == 1


def test_failed_job_refunds(harness):
    token = harness.user(credits=5, premium=True)
    created = harness.create(token, SONG)
    with harness.ctx.db.session() as s:  # the stored input vanished: the job cannot succeed
        job = s.scalar(select(Job))
        harness.ctx.storage.delete(job.inputs["audiofile"]["key"])
    harness.run_all()
    got = harness.get(created["data"]["hash"])
    assert got["status"] == "failed" and got["success"] is True and got["data"]["message"]
    assert balance(harness, token) == 5


def test_history_time_left_and_credits(harness):
    token = harness.user(credits=5, premium=True)
    harness.create(token, SONG)
    harness.run_all()
    item = harness.client.get("/api/app/separation_history", params={"api_token": token}).json()["data"][0]
    assert item["job_exists"] is True and item["credits"] == 1
    assert item["time_left"] in (71, 72)
    assert item["algorithm"]["render_id"] == 55 and item["algorithm"]["algorithm_group"]["name"]


def test_daily_free_limit(make_harness):
    h = make_harness(free_daily_jobs=1)
    token = h.user()
    assert h.create(token, SONG)["success"]
    h.run_all()
    r = h.create(token, SONG)
    assert r["status"] == 400 and "free separations" in r["message"]
    q = h.client.get("/api/app/queue", params={"api_token": token}).json()
    assert q["free_separations"] == {"left": 0, "max": 1}


def test_long_filenames_toggle_changes_names(harness):
    token = harness.user()
    short = harness.create(token, SONG, filename="My Song.wav")["data"]["hash"]
    harness.run_all()
    harness.client.post("/api/app/enable_long_filenames", data={"api_token": token})
    long_ = harness.create(token, SONG, filename="My Song.wav")["data"]["hash"]
    harness.run_all()
    short_names = [f["download"] for f in harness.get(short)["data"]["files"]]
    long_names = [f["download"] for f in harness.get(long_)["data"]["files"]]
    assert short_names == [
        "my-song_phantomcentreextraction_mt_dsp_center.wav",
        "my-song_phantomcentreextraction_mt_dsp_wide.wav",
    ]
    assert all(n.startswith("my-song_phantom-centre-extraction_") for n in long_names)
    assert [n.rsplit("_", 1)[1] for n in long_names] == ["center.wav", "wide.wav"]


def test_is_demo_jobs_appear_in_demo(harness):
    token = harness.user()
    h = harness.create(token, SONG, is_demo="1")["data"]["hash"]
    assert harness.client.get("/api/app/demo").json() == []  # not done yet
    harness.run_all()
    demo = harness.client.get("/api/app/demo").json()
    assert [d["hash"] for d in demo] == [h]
    assert demo[0]["input_audio"].startswith("http://testserver/storage/temp/")


def test_work_items_and_rows_counted(harness):
    token = harness.user()
    harness.create(token, SONG)
    with harness.ctx.db.reader() as s:
        assert s.scalar(select(func.count()).select_from(WorkItem)) == 1
