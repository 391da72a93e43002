"""Logging and request ids: the configuration applied in this process (formatters, filter, levels, a TestClient
app), and real `openmvsep serve` / `openmvsep worker` processes reading their stderr."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from openmvsep.api.app import create_app
from openmvsep.api.request_id import request_id_from
from openmvsep.bootstrap import Services
from openmvsep.logs import OWN_LOGGERS, REQUEST_ID, logging_config
from openmvsep.runner.executor import NoExecutor

from conftest import make_settings, stereo_mix
from processes import BIN, RedisServer, Server

HEX32 = re.compile(r"[0-9a-f]{32}")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


# --- the request id -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["abc-123", "A.b_c-9", "x" * 64, "0"])
def test_a_sane_client_id_is_kept(given):
    assert request_id_from(given) == given


@pytest.mark.parametrize("given", [None, "", "x" * 65, "has space", "a\r\nSet-Cookie: x=1", "ünï", "a/b", "a;b"])
def test_anything_else_gets_a_fresh_id(given):
    made = request_id_from(given)
    assert HEX32.fullmatch(made) and made != given
    assert request_id_from(given) != made  # fresh each time


# --- the configuration, applied in this process ---------------------------------------------------------------


@pytest.fixture
def apply_logging():
    """dictConfig(logging_config(settings)) here, writing to pytest's captured stderr; logging as it was after."""
    loggers = [logging.getLogger(name) for name in ("", *OWN_LOGGERS, "uvicorn.access", "sqlalchemy.engine")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield lambda settings: logging.config.dictConfig(logging_config(settings))
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]  # raises on any line that is not JSON


def test_json_lines_carry_request_id_exception_and_extras(apply_logging, capsys, tmp_path):
    apply_logging(make_settings(tmp_path, log_format="json"))
    log = logging.getLogger("openmvsep.test")
    log.info("outside %s", "any request")
    token = REQUEST_ID.set("req-1")
    try:
        log.warning("job %s claimed", "abc", extra={"job": "abc", "path": tmp_path})
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.exception("it broke")
    finally:
        REQUEST_ID.reset(token)
    outside, claimed, broke = json_lines(capsys.readouterr().err)
    for line in (outside, claimed, broke):
        assert {"time", "level", "logger", "message", "request_id", "process"} <= line.keys()
        assert line["logger"] == "openmvsep.test" and re.match(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"]
        )
    assert (outside["level"], outside["message"], outside["request_id"]) == ("INFO", "outside any request", "-")
    assert (claimed["level"], claimed["message"], claimed["request_id"]) == ("WARNING", "job abc claimed", "req-1")
    assert claimed["job"] == "abc" and claimed["path"] == str(tmp_path)  # extras, what JSON cannot hold as text
    assert "exc_info" not in claimed
    assert broke["request_id"] == "req-1" and broke["level"] == "ERROR"
    assert broke["exc_info"].startswith("Traceback") and "ZeroDivisionError: division by zero" in broke["exc_info"]


def test_text_lines_show_the_request_id_and_levels_follow_the_settings(apply_logging, capsys, tmp_path):
    apply_logging(make_settings(tmp_path))
    logging.getLogger("openmvsep.test").debug("not at INFO")
    logging.getLogger("sqlalchemy.engine").info("a library's chatter")
    logging.getLogger("sqlalchemy.engine").warning("a library's warning")
    token = REQUEST_ID.set("req-7")
    logging.getLogger("uvicorn.error").info("served")
    REQUEST_ID.reset(token)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING MainProcess sqlalchemy\.engine \[-\] "
        r"a library's warning",
        lines[0],
    )
    assert lines[1].endswith(" INFO MainProcess uvicorn.error [req-7] served")

    apply_logging(make_settings(tmp_path, log_level="debug"))  # any case, as uvicorn's --log-level takes it
    logging.getLogger("openmvsep.test").debug("now shown")
    assert capsys.readouterr().err.rstrip().endswith("DEBUG MainProcess openmvsep.test [-] now shown")


def test_access_log_switch(apply_logging, capsys, tmp_path):
    for on in (False, True):
        apply_logging(make_settings(tmp_path, access_log=on))
        logging.getLogger("uvicorn.access").info('127.0.0.1:1 - "GET / HTTP/1.1" 200')
        assert ('"GET / HTTP/1.1" 200' in capsys.readouterr().err) is on


def test_lines_logged_while_serving_carry_that_requests_id(apply_logging, capsys, tmp_path):
    """In the event loop, in the threadpool that runs sync routes, and in the 500 handler after a crash."""
    settings = make_settings(tmp_path, log_format="json")
    app = create_app(Services(settings, executor=NoExecutor()))
    log = logging.getLogger("openmvsep.test")

    @app.get("/test/async")
    async def in_the_loop():
        log.info("async route", extra={"ident": threading.get_ident()})
        return {}

    @app.get("/test/sync")
    def in_a_thread():
        log.info("sync route", extra={"ident": threading.get_ident()})
        return {}

    @app.get("/test/crash")
    def crash():
        raise RuntimeError("boom")

    apply_logging(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        capsys.readouterr()  # startup
        for name in ("async", "sync", "crash"):
            r = client.get(f"/test/{name}", headers={"X-Request-ID": f"req-{name}"})
            assert r.headers["X-Request-ID"] == f"req-{name}"
        assert r.status_code == 500 and r.json()["message"] == "Internal server error"
    lines = {line["message"]: line for line in json_lines(capsys.readouterr().err)}
    assert lines["async route"]["request_id"] == "req-async"
    assert lines["sync route"]["request_id"] == "req-sync"
    assert lines["sync route"]["ident"] != lines["async route"]["ident"]  # it really ran in the threadpool
    assert lines["unhandled error"]["request_id"] == "req-crash"
    assert "RuntimeError: boom" in lines["unhandled error"]["exc_info"]


# --- real processes -------------------------------------------------------------------------------------------


def _headers(server: Server, path: str, *args: str) -> tuple[int, dict[str, str]]:
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-D", "-", *args, server.url + path],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    status_line, *rest = out.strip().splitlines()
    return int(status_line.split()[1]), {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in rest if ":" in h)}


def _wait_for(path: Path, predicate, timeout: float = 30) -> list[str]:
    deadline = time.time() + timeout
    while True:
        lines = path.read_text().splitlines()
        if predicate(lines) or time.time() > deadline:
            return lines
        time.sleep(0.2)


@needs_curl
def test_serve_json_logs_request_ids_and_access_log(tmp_path):
    server = Server(
        tmp_path / "data",
        workers=1,
        OPENMVSEP_LOG_FORMAT="json",
        OPENMVSEP_LOG_LEVEL="INFO",
        OPENMVSEP_ACCESS_LOG="true",
        OPENMVSEP_MAX_UPLOAD_BYTES=str(500_000),
        OPENMVSEP_REMOTE_ALLOW_PRIVATE="true",  # the webhook below goes to 127.0.0.1:9, where nothing listens
    )
    try:
        status, headers = _headers(server, "/health", "-H", "X-Request-ID: abc-123")
        assert (status, headers["x-request-id"]) == (200, "abc-123")
        status, headers = _headers(server, "/health")
        assert status == 200 and HEX32.fullmatch(headers["x-request-id"])
        status, headers = _headers(server, "/health", "-H", "X-Request-ID: no spaces, please")
        assert HEX32.fullmatch(headers["x-request-id"])
        status, headers = _headers(server, "/api/no/such/route", "-H", "X-Request-ID: four-oh-four")
        assert (status, headers["x-request-id"]) == (404, "four-oh-four")
        big = tmp_path / "big.bin"
        big.write_bytes(b"\0" * 600_000)
        status, headers = _headers(
            server,
            "/api/separation/create",
            "-H",
            "X-Request-ID: too-big",
            "-F",
            "sep_type=55",
            "-F",
            f"audiofile=@{big}",
        )
        assert (status, headers["x-request-id"]) == (413, "too-big")

        # A worker process logs in the same format, under its name (its claim); the serve process's webhook sender
        # logs the failed delivery (nothing listens on port 9).
        token = server.cli("user", "create", "--email", "log@example.com", "--password", "password123")
        song = tmp_path / "a.wav"
        sf.write(song, stereo_mix(1.0).T, 44100)
        created = server.curl(
            "/api/separation/create",
            "-F",
            f"api_token={token.strip().splitlines()[-1]}",
            "-F",
            "sep_type=55",
            "-F",
            "add_opt1=dsp",
            "-F",
            "webhook_url=http://127.0.0.1:9/hook",
            "-F",
            f"audiofile=@{song}",
        )
        assert server.wait_status(created["data"]["hash"], {"done", "failed"})["status"] == "done"
        _wait_for(server.log_path, lambda lines: any("webhook" in line for line in lines))
    finally:
        server.stop()

    lines = json_lines(server.log_path.read_text())  # stdout and stderr of serve and its worker: all JSON
    assert all("request_id" in line for line in lines)
    assert any(line["logger"] == "openmvsep.cli" and "serving on" in line["message"] for line in lines)
    assert any(
        line["logger"] == "uvicorn.error" and "Application startup complete" in line["message"] for line in lines
    )
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    by_id = {line["request_id"]: line["message"] for line in access}
    assert '"GET /health HTTP/1.1" 200' in by_id["abc-123"]
    assert '"GET /api/no/such/route HTTP/1.1" 404' in by_id["four-oh-four"]
    assert '"POST /api/separation/create HTTP/1.1" 413' in by_id["too-big"]
    claimed = next(line for line in lines if "claimed by" in line["message"])
    assert claimed["logger"] == "openmvsep.jobs" and claimed["level"] == "INFO"
    assert claimed["process"].startswith("local:") and claimed["request_id"] == "-"
    webhook = next(line for line in lines if "webhook" in line["message"])
    assert webhook["logger"] == "openmvsep.webhooks" and webhook["level"] == "WARNING"
    assert not webhook["process"].startswith("local:") and webhook["request_id"] == "-"  # sent by serve, not a worker


@needs_curl
def test_serve_text_logs_without_access_log(tmp_path, monkeypatch):
    for name in ("OPENMVSEP_LOG_FORMAT", "OPENMVSEP_ACCESS_LOG", "OPENMVSEP_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    server = Server(tmp_path / "data", workers=0)
    try:
        status, headers = _headers(server, "/health", "-H", "X-Request-ID: text-1")
        assert (status, headers["x-request-id"]) == (200, "text-1")
    finally:
        server.stop()
    text = server.log_path.read_text()
    assert re.search(
        r"^\S+ \S+ INFO MainProcess openmvsep\.cli \[-\] openmvsep serving on http://127\.0\.0\.1:", text, re.M
    )
    assert re.search(r"^\S+ \S+ INFO MainProcess uvicorn\.error \[-\] Application startup complete\.$", text, re.M)
    assert "GET /health" not in text and "text-1" not in text


def test_celery_worker_logs_through_our_configuration(tmp_path):
    """`openmvsep worker`: the supervisor and the Celery process (which would install its own handler) write JSON."""
    from openmvsep.settings import Settings
    from openmvsep.store.migrate import upgrade

    upgrade(Settings(data_dir=tmp_path / "data").effective_database_url)  # the supervisor hands work back at exit
    redis = RedisServer(tmp_path / "redis")
    env = {
        **os.environ,
        "OPENMVSEP_DATA_DIR": str(tmp_path / "data"),
        "OPENMVSEP_EXECUTOR": "celery",
        "OPENMVSEP_BROKER_URL": redis.url,
        "OPENMVSEP_CELERY_QUEUE": f"openmvsep-logging-{os.getpid()}",
        "OPENMVSEP_DEVICE": "cpu",
        "OPENMVSEP_LOG_FORMAT": "json",
        "OPENMVSEP_LOG_LEVEL": "INFO",
        # Celery warns a root user before it sets up logging (nothing can format that); CI runs as root.
        "PYTHONWARNINGS": "ignore:You're running the worker with superuser privileges",
    }
    stderr = tmp_path / "worker.err"
    with open(stderr, "wb") as err:
        # stdout apart: Celery prints its banner there, whatever logging says.
        proc = subprocess.Popen(
            [str(BIN / "openmvsep"), "worker", "--concurrency", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        _wait_for(stderr, lambda lines: any(" ready." in line for line in lines), timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        redis.stop()
    lines = json_lines(stderr.read_text())
    assert any(line["logger"] == "openmvsep.cli" and "1 process(es)" in line["message"] for line in lines)
    ready = next(line for line in lines if line["message"].endswith(" ready."))
    assert ready["logger"].startswith("celery") and ready["process"].startswith("celery:")
    assert not [line for line in lines if line["level"] == "ERROR"]
