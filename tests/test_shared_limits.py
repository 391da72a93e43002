"""The request limits hold across API processes that share a store (Redis); with memory each counts alone."""

from __future__ import annotations

import logging
import uuid

REDIS = "redis://127.0.0.1:6379/0"


def assert_mvsep_error(body: dict) -> None:
    assert body["success"] is False and body["data"]["message"] == "Too Many Attempts.", body


def _limited_pair(make_harness, **settings):
    return make_harness(**settings), make_harness(**settings)


def test_two_processes_sharing_redis_enforce_one_limit(make_harness):
    prefix = f"test-{uuid.uuid4().hex}"
    a, b = _limited_pair(
        make_harness,
        rate_limit_per_minute=4,
        storage_miss_limit_per_minute=3,
        rate_limit_storage_url=REDIS,
        rate_limit_key_prefix=prefix,
    )
    assert a.ctx is not b.ctx and a.settings.data_dir != b.settings.data_dir  # two apps over their own services
    answers = [c.client.get("/api/app/queue") for c in (a, b, a, b, a, b)]
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 429, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in answers[:4]] == ["3", "2", "1", "0"]
    assert_mvsep_error(answers[5].json())
    assert int(answers[5].headers["retry-after"]) <= 60

    misses = [c.client.get(f"/storage/temp/{uuid.uuid4().hex}/x.wav").status_code for c in (a, b, a, b)]
    assert misses == [404, 404, 404, 429]


def test_with_memory_storage_each_process_counts_its_own(make_harness):
    a, b = _limited_pair(make_harness, rate_limit_per_minute=4)
    assert [a.client.get("/api/app/queue").status_code for _ in range(4)] == [200] * 4
    assert [b.client.get("/api/app/queue").status_code for _ in range(4)] == [200] * 4
    assert a.client.get("/api/app/queue").status_code == 429


def test_an_unreachable_shared_store_lets_requests_pass_and_says_so(make_harness, caplog):
    h = make_harness(rate_limit_per_minute=1, rate_limit_storage_url="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="openmvsep.api"):
        answers = [h.client.get("/api/app/queue") for _ in range(3)]
    assert [r.status_code for r in answers] == [200] * 3
    assert "x-ratelimit-limit" not in answers[0].headers  # no limit is being counted: none is claimed
    warnings = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request
