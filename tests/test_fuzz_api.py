"""Fuzzing every route from the server's own OpenAPI document: whatever arrives, no answer is a 5xx.

Schemathesis generates requests from `/openapi.json` (api/openapi.py describes the form fields each route
reads); they go through the real app, on SQLite, with a real user whose token replaces the generated one
in half the requests so that the routes behind the login are reached too. The server is a real
`openmvsep serve` process, so what is fuzzed includes the HTTP parsing in front of the app. About 120 requests per route
(a few thousand in all), well under two minutes on two cores.
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from openmvsep.api.app import create_app
from openmvsep.bootstrap import Services
from openmvsep.runner.executor import NoExecutor

from conftest import make_settings, stereo_mix, wav_bytes
from processes import Server

EXAMPLES_PER_ROUTE = 120


class Fuzzed:
    """A real `openmvsep serve` (no workers: jobs stay queued) with one user and one job of that user."""

    def __init__(self, root: Path):
        self.server = Server(
            root / "data", workers=0, OPENMVSEP_RATE_LIMIT_PER_MINUTE=0, OPENMVSEP_FREE_CONCURRENT_JOBS=0
        )
        self.session = requests.Session()
        args = ["user", "create", "--email", "fuzz@example.com", "--password", "password123", "--credits", "1000000"]
        self.token = self.server.cli(*args, "--premium").strip().splitlines()[-1]
        created = self.session.post(
            self.server.url + "/api/separation/create",
            data={"api_token": self.token, "sep_type": "55", "add_opt1": "dsp", "output_format": "4"},
            files={"audiofile": ("song.wav", wav_bytes(stereo_mix(0.5)), "audio/wav")},
        ).json()
        self.known_hash = created["data"]["hash"]
        self.sent = 0


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    f = Fuzzed(tmp_path_factory.mktemp("fuzz"))
    yield f
    f.server.stop()


def _document() -> dict:
    # The document only: an app that is never started, so it opens nothing (the fuzzed server is the fixture's).
    with tempfile.TemporaryDirectory() as root:
        return create_app(Services(make_settings(Path(root)), executor=NoExecutor())).openapi()


schema = schemathesis.openapi.from_dict(_document())


def _use_real_identity(case, h: Fuzzed) -> None:
    """Half the cases (chosen by their own content, so a failure replays) carry the real token and hash."""
    if zlib.crc32(repr((case.query, case.body)).encode()) % 2:
        return
    for container in (case.query, case.body):
        if isinstance(container, dict):
            if "api_token" in container:
                container["api_token"] = h.token
            if "hash" in container:
                container["hash"] = h.known_hash


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same requests on every run: a failure here is a defect, not bad luck
    database=None,
)
def test_no_request_gets_a_server_error(case, fuzzed):
    fuzzed.sent += 1
    _use_real_identity(case, fuzzed)
    response = case.call(base_url=fuzzed.server.url, session=fuzzed.session)
    assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:500])
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400 and content_type.startswith("application/json"):  # every refusal in MVSep's shape
        body = response.json()
        assert body["success"] is False and body["message"], body


def test_the_fuzz_run_sent_thousands_of_requests(fuzzed):
    # Runs after the parametrized cases (pytest keeps file order): a schema that stopped describing the
    # routes' fields would make Hypothesis run out of distinct requests early.
    assert fuzzed.sent >= 2000, fuzzed.sent
