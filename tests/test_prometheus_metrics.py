"""`/metrics`: off by default, behind its token when one is set, and numbers that follow the real queue."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from openmvsep.service import lifecycle

from conftest import stereo_mix, wav_bytes

TOKEN = "scrape-secret"


def scrape(h) -> dict[tuple[str, tuple], float]:
    r = h.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def test_metrics_are_off_unless_enabled(harness):
    r = harness.client.get("/metrics")
    assert r.status_code == 404
    assert r.json()["success"] is False


def test_metrics_need_the_token_when_one_is_set(make_harness):
    h = make_harness(metrics_enabled=True, metrics_token=TOKEN)
    assert h.client.get("/metrics").status_code == 401
    assert h.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(h)
    open_metrics = make_harness(metrics_enabled=True)  # no token: open, for a scraper on a private network
    assert open_metrics.client.get("/metrics").status_code == 200


def test_metrics_follow_the_queue_the_workers_and_the_logins(make_harness):
    h = make_harness(metrics_enabled=True, metrics_token=TOKEN, free_concurrent_jobs=0)
    premium, registered = h.user("p@example.com", credits=100, premium=True), h.user("r@example.com", credits=100)
    song = wav_bytes(stereo_mix(0.5))
    for token in (premium, registered, registered):
        assert h.create(token, song)["success"]

    m = scrape(h)
    assert m[("openmvsep_queue_depth", (("plan", "premium"),))] == 1
    assert m[("openmvsep_queue_depth", (("plan", "registered"),))] == 2
    assert m[("openmvsep_queue_depth", (("plan", "unregistered"),))] == 0
    assert m[("openmvsep_jobs", (("status", "waiting"),))] == 3
    assert m[("openmvsep_work_items", (("attempts", "0"),))] == 3

    # A worker holding work shows its heartbeat; the premium job is claimed first.
    claim = lifecycle.claim_next(h.ctx.db, h.worker.name, h.settings.lease_seconds)
    assert claim is not None
    m = scrape(h)
    assert 0 <= m[("openmvsep_worker_heartbeat_age_seconds", (("worker", h.worker.name),))] < 5
    assert m[("openmvsep_queue_depth", (("plan", "premium"),))] == 0
    assert m[("openmvsep_work_items", (("attempts", "1"),))] == 1
    h.worker.run_claim(claim)
    h.run_all()

    m = scrape(h)
    assert m[("openmvsep_jobs", (("status", "done"),))] == 3
    assert m[("openmvsep_job_run_recent_jobs", ())] == 3
    assert m[("openmvsep_job_wait_recent_jobs", ())] == 3
    assert m[("openmvsep_job_run_seconds", (("quantile", "1"),))] > 0
    assert not any(name == "openmvsep_worker_heartbeat_age_seconds" for name, _ in m)

    before = m[("openmvsep_login_failures_total", ())]
    h.client.post("/api/app/login", data={"email": "p@example.com", "password": "wrong-password"})
    h.client.post("/api/app/login", data={"email": "p@example.com", "password": "password123"})
    assert scrape(h)[("openmvsep_login_failures_total", ())] == before + 1


def test_metrics_count_webhook_events_and_their_failures(make_harness):
    h = make_harness(metrics_enabled=True, metrics_token=TOKEN, webhook_senders=0, remote_allow_private=True)
    token = h.user("w@example.com", credits=10)
    # Nothing listens on port 9 (discard): the delivery attempt fails and the event waits to be retried.
    assert h.create(token, wav_bytes(stereo_mix(0.5)), webhook_url="http://127.0.0.1:9/hook")["success"]
    h.run_all()
    m = scrape(h)
    assert m[("openmvsep_webhook_events", (("status", "pending"),))] == 1
    assert m[("openmvsep_webhook_events_retrying", ())] == 0

    assert h.ctx.webhook_senders.send_next("metrics-sender")
    m = scrape(h)
    assert m[("openmvsep_webhook_events", (("status", "pending"),))] == 1
    assert m[("openmvsep_webhook_events_retrying", ())] == 1
    assert m[("openmvsep_webhook_events", (("status", "delivered"),))] == 0
