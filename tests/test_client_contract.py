"""The client reads every answer captured from the real MVSep (CONTRACT's Postman collection) into its typed models,
and turns every error shape MVSep is known to send into an exception that carries the server's own words."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from openmvsep.client import MVSepError, NotFound, calls, models
from openmvsep.client.errors import server_message

from conftest import SHARED

PM_FILE = SHARED / "mvsep" / "postman-collection.json"
ALG26_FILE = SHARED / "mvsep" / "algorithms-2026.json"

# The client's call for each captured path (arguments do not matter: only the answer's reading is exercised).
CALL_FOR_PATH: dict[str, calls.Call[Any]] = {
    "/api/app/enable_long_filenames": calls.toggle("t", "enable_long_filenames"),
    "/api/app/disable_long_filenames": calls.toggle("t", "disable_long_filenames"),
    "/api/app/enable_premium": calls.toggle("t", "enable_premium"),
    "/api/app/disable_premium": calls.toggle("t", "disable_premium"),
    "/api/app/user": calls.user("t"),
    "/api/app/separation_history": calls.history("t"),
    "/api/quality_checker/add": calls.qc_add("t", b"zip", "algo", "text", "pw"),
    "/api/quality_checker/delete": calls.qc_delete(1, "pw"),
    "/api/app/algorithms": calls.algorithms(),
    "/api/app/register": calls.register("n", "e@example.com", "pw"),
    "/api/app/login": calls.login("e@example.com", "pw"),
    "/api/separation/create": calls.create("t", 55, b"audio"),
    "/api/separation/get": calls.get("h"),
    "/api/app/news": calls.news(),
    "/api/app/demo": calls.demo(),
}


def _examples() -> list[tuple[str, str, int, str]]:
    """(path, example name, HTTP code, raw body) of every saved answer in the collection."""
    if not PM_FILE.exists():
        pytest.skip("shared/mvsep/postman-collection.json is not present")

    def walk(items: list[dict]) -> Iterable[dict]:
        for item in items:
            yield from walk(item["item"]) if "item" in item else (item,)

    out = []
    for item in walk(json.loads(PM_FILE.read_text("utf-8"))["item"]):
        raw = item["request"]["url"]
        url = raw["raw"] if isinstance(raw, dict) else raw
        for example in item.get("response", []):
            out.append((urlsplit(url).path, example["name"], example["code"], example["body"]))
    return out


def _answer(code: int, body: str | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(code, content=content, headers=headers, request=httpx.Request("GET", "https://mvsep.com/"))


def _parse(path: str, code: int, body: str) -> Any:
    call = CALL_FOR_PATH[path]
    return call.parse(calls.read_answer(_answer(code, body), call))


def test_every_captured_answer_has_a_call_and_parses():
    examples = _examples()
    assert len(examples) >= 15
    assert {path for path, *_ in examples} <= set(CALL_FOR_PATH), "a captured endpoint the client cannot call"
    for path, name, code, body in examples:
        if code >= 400:
            with pytest.raises(MVSepError) as refused:
                _parse(path, code, body)
            assert refused.value.status_code == code
            assert refused.value.message == server_message(json.loads(body))
            continue
        parsed = _parse(path, code, body)
        assert parsed is not None, (path, name)
        assert not isinstance(parsed, dict), (path, name)  # a typed model (or a list of them)


def _captured(path: str, code: int = 200, where=lambda body: True) -> list[str]:
    return [b for p, _, c, b in _examples() if p == path and c == code and where(json.loads(b))]


def test_captured_job_statuses_read_as_typed_fields():
    def captured_status(status: str) -> Any:
        body = _captured("/api/separation/get", where=lambda b: b["status"] == status)[0]
        return _parse("/api/separation/get", 200, body)

    waiting, done = captured_status("waiting"), captured_status("done")
    assert isinstance(waiting, models.JobStatus) and waiting.active and not waiting.done
    assert (waiting.queue_count, waiting.current_order) == (3, 2)
    assert done.done and done.algorithm and done.algorithm.startswith("Ensemble 8 models")
    assert done.output_format and done.date and done.input_file and done.input_file["url"]
    assert isinstance(done.files, list)


def test_captured_lists_read_as_typed_items():
    algorithms = _parse("/api/app/algorithms", 200, _captured("/api/app/algorithms")[0])
    assert algorithms and all(isinstance(a, models.Algorithm) and a.name for a in algorithms)
    assert [a.render_id for a in algorithms] == [a.raw["render_id"] for a in algorithms]
    with_fields = [a for a in algorithms if a.fields]
    assert with_fields and all(f.name.startswith("add_opt") for a in with_fields for f in a.fields)
    # options arrive as a JSON-encoded string; the model hands out the decoded map
    assert any(f.options for a in with_fields for f in a.fields)

    history = _parse("/api/app/separation_history", 200, _captured("/api/app/separation_history")[0])
    assert history and all(isinstance(h, models.HistoryItem) and h.hash and h.id for h in history)
    assert all(isinstance(h.job_exists, bool) for h in history)

    news = [n for body in _captured("/api/app/news") for n in _parse("/api/app/news", 200, body)]
    assert {n.lang for n in news} == {"ru", "en"} and all(n.title and n.id for n in news)

    demo = _parse("/api/app/demo", 200, _captured("/api/app/demo")[0])
    assert demo and all(d.hash and d.input_audio and d.render_id for d in demo)


def test_captured_account_and_quality_checker_answers():
    user = _parse("/api/app/login", 200, _captured("/api/app/login")[0])
    assert isinstance(user, models.User) and user.premium_minutes is not None
    added = _parse("/api/quality_checker/add", 200, _captured("/api/quality_checker/add")[0])
    assert (added.id, added.link) == (7772, "https://mvsep.com/api/quality_checker/entry?id=7772")
    deleted = _parse("/api/quality_checker/delete", 200, _captured("/api/quality_checker/delete")[0])
    assert deleted.success and deleted.message == "successfully deleted"
    toggled = _parse("/api/app/enable_premium", 200, _captured("/api/app/enable_premium")[0])
    assert toggled.success and toggled.message == "successfully enabled"


def test_the_2026_algorithm_dump_parses():
    if not ALG26_FILE.exists():
        pytest.skip("shared/mvsep/algorithms-2026.json is not present")
    algorithms = _parse("/api/app/algorithms", 200, ALG26_FILE.read_text("utf-8"))
    assert len(algorithms) == 117
    assert all(a.group for a in algorithms)  # algorithm_group.name
    options = {o for a in algorithms for f in a.fields for o in f.options}
    assert "0.3" in options or any(not k.isdigit() for k in options)  # keys stay strings, non-integers included


@pytest.mark.parametrize(
    ("code", "body", "message"),
    [
        # CONTRACT §1.5: every shape MVSep has been seen sending
        (400, {"success": False, "errors": ["Seperation type is unavailable until you purchase premium membership"]},
         "Seperation type is unavailable until you purchase premium membership"),
        (400, {"success": False, "data": {"message": "Seperation type is not set"}}, "Seperation type is not set"),
        (400, {"success": False, "message": {"email": ["The email field is required."], "password": ["Too short."]}},
         "The email field is required.; Too short."),
        (401, {"message": "Unauthenticated."}, "Unauthenticated."),
        (200, {"success": False, "data": {"message": "Your audio file is being downloaded, please wait a while..."}},
         "Your audio file is being downloaded, please wait a while..."),
    ],
)  # fmt: skip
def test_error_shapes_raise_with_the_servers_message(code, body, message):
    call = calls.create("t", 55, b"audio")
    with pytest.raises(MVSepError) as refused:
        calls.read_answer(_answer(code, json.dumps(body)), call)
    assert refused.value.message == message
    assert refused.value.status_code == code


def test_unknown_hash_is_not_found_with_the_servers_message():
    body = {"success": False, "status": "not_found", "data": {"message": "File or File Hash not found"}}
    with pytest.raises(NotFound, match="File or File Hash not found"):
        calls.read_answer(_answer(200, json.dumps(body)), calls.get("nope"))


def test_a_body_that_is_not_json_is_an_error_not_a_crash():
    with pytest.raises(MVSepError, match="HTTP 502 .*not JSON.*Bad Gateway"):
        calls.read_answer(_answer(502, "<html>Bad Gateway</html>"), calls.get("h"))
    # a success without the expected keys reads as empty fields, never a KeyError
    created = calls.create("t", 55, b"a").parse(
        calls.read_answer(_answer(200, '{"success": true}'), calls.create("t", 55))
    )
    assert created.hash == "" and created.link is None


def test_retry_after_reads_seconds_and_http_dates():
    assert calls.retry_after("3") == 3.0
    assert calls.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now
    assert calls.retry_after("soon") is None
    policy = calls.RetryPolicy(backoff=0.5, max_wait=10)
    assert [policy.delay(n, None) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10]
    assert policy.delay(0, _answer(429, "{}", {"Retry-After": "7"})) == 7
