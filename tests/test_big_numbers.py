"""Numbers no database column holds, digits that are not ASCII, and names no file can have: clear 4xx, never 500."""

from __future__ import annotations

import pytest

from conftest import stereo_mix, wav_bytes

HUGE = str(2**63)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/app/news", {"start": HUGE}),
        ("/api/app/demo", {"start": HUGE}),
        ("/api/app/demo", {"algorithm_id": HUGE}),
        ("/api/app/separation_history", {"start": HUGE}),
        ("/api/quality_checker/leaderboard", {"dataset_type": HUGE}),
        ("/api/quality_checker/leaderboard", {"start": HUGE}),
        ("/api/quality_checker/entry", {"id": HUGE}),
        ("/api/quality_checker/queue", {"start": HUGE}),
    ],
)
def test_an_integer_the_database_cannot_hold_is_a_400(harness, path, params):
    token = harness.user()
    r = harness.client.get(path, params={**params, "api_token": token})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["success"] is False and "out of range" in body["message"]


@pytest.mark.parametrize("value", [HUGE, "²", "٣", "-1", "1e3"])
def test_credit_threshold_takes_whole_ascii_numbers_only(harness, value):
    token = harness.user()
    r = harness.client.post("/api/credit_alert", data={"api_token": token, "credit_threshold": value})
    assert r.status_code == 400, r.text
    assert r.json()["success"] is False
    assert harness.client.get("/api/credit_alert", params={"api_token": token}).json()["data"] == {
        "credit_threshold": 0
    }


def test_a_storage_name_no_file_can_have_is_a_404(harness):
    token = harness.user()
    harness.create(token, wav_bytes(stereo_mix(1.0)))
    for name in ("x" * 256, "y" * 4096):
        r = harness.client.get(f"/storage/temp/{name}")
        assert r.status_code == 404 and r.json()["message"] == "File not found"
