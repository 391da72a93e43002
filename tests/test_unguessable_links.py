"""Download links and job hashes cannot be derived from the input, its name and the time, and trying names on
/storage is throttled."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select

from openmvsep.service.jobs import intake
from openmvsep.store.models import Job

from conftest import stereo_mix, wav_bytes

SONG = wav_bytes(stereo_mix(1.0))
HASH = re.compile(r"(\d{14})-([0-9a-f]{10})-song\.wav")  # MVSep's shape: ALCLI splits it on '-'
# /storage/<folder>/<token>/<name>: the token is 32 hex digits, 128 random bits (at least 64 are required)
STORAGE_PATH = re.compile(r"/storage/(temp|processed)/([0-9a-f]{32})/[^/]+")


def assert_mvsep_error(body: dict) -> None:
    assert body["success"] is False and body["data"]["message"] == "Too Many Attempts.", body


def storage_path(url: str) -> str:
    parts = urlsplit(url)
    assert parts.netloc == "testserver" and not parts.query, url
    return parts.path


def test_same_file_same_name_same_second_gives_unrelated_hashes_and_links(harness, monkeypatch):
    one_second = datetime(2026, 1, 2, 3, 4, 5)
    monkeypatch.setattr(intake, "utcnow", lambda: one_second)
    hashes = [harness.create(harness.user(f"u{i}@example.com"), SONG, "song.wav")["data"]["hash"] for i in range(2)]
    harness.run_all()

    middles = []
    for hash_value in hashes:
        match = HASH.fullmatch(hash_value)
        assert match and match[1] == "20260102030405", hash_value
        middles.append(match[2])
    assert middles[0] != middles[1]
    assert hashlib.sha256(SONG).hexdigest()[:10] not in middles  # MVSep's digest would be the same for both

    tokens = []
    for hash_value in hashes:
        data = harness.get(hash_value)["data"]
        urls = [data["input_file"]["url"]] + [f["url"] for f in data["files"]]
        found = set()
        for url in urls:
            match = STORAGE_PATH.fullmatch(storage_path(url))
            assert match, url
            found.add(match[2])
            assert harness.client.get(storage_path(url)).status_code == 200
        assert len(found) == 2  # one folder for the input, one for the outputs
        tokens.append(found)
    assert tokens[0].isdisjoint(tokens[1])


def test_rows_with_flat_keys_still_download(harness):
    """Jobs stored before the random folders keep their links (`/storage/temp/<hash>`)."""
    hash_value = harness.create(harness.user(), SONG, "song.wav")["data"]["hash"]
    harness.run_all()
    storage = harness.ctx.storage
    with harness.ctx.db.session() as s:
        job = s.scalar(select(Job).where(Job.hash == hash_value))
        flat_inputs = {}
        for role, stored in job.inputs.items():
            flat = f"temp/{stored['key'].rsplit('/', 1)[-1]}"
            storage.put_file(flat, storage.path(stored["key"]), move=False)
            flat_inputs[role] = {**stored, "key": flat}
        flat_files = []
        for f in job.files:
            flat = f"processed/{f['key'].rsplit('/', 1)[-1]}"
            storage.put_file(flat, storage.path(f["key"]), move=False)
            flat_files.append({**f, "key": flat})
        job.inputs, job.files = flat_inputs, flat_files
    data = harness.get(hash_value)["data"]
    assert storage_path(data["input_file"]["url"]) == f"/storage/temp/{hash_value}"
    for url in [data["input_file"]["url"]] + [f["url"] for f in data["files"]]:
        assert storage_path(url).count("/") == 3
        assert harness.client.get(storage_path(url)).status_code == 200


def test_repeated_storage_misses_get_429(make_harness):
    h = make_harness(storage_miss_limit_per_minute=3)
    hash_value = h.create(h.user(), SONG, "song.wav")["data"]["hash"]
    h.run_all()
    real = storage_path(h.get(hash_value)["data"]["input_file"]["url"])
    assert h.client.get(real).status_code == 200  # a hit costs nothing
    guesses = [f"/storage/temp/{uuid.uuid4().hex}/{hash_value}", f"/storage/temp/{hash_value}", "/storage/x/y"]
    assert [h.client.get(path).status_code for path in guesses] == [404, 404, 404]
    for path in (guesses[0], real):  # once over the limit, the address gets nothing for the rest of the minute
        refused = h.client.get(path)
        assert refused.status_code == 429
        assert_mvsep_error(refused.json())
        assert refused.headers["retry-after"].isdigit() and refused.headers["x-ratelimit-limit"] == "3"


def test_the_janitor_knows_inputs_in_their_folders_from_orphans(harness):
    from openmvsep.runner.janitor import sweep_orphans

    hash_value = harness.create(harness.user(), SONG, "song.wav")["data"]["hash"]
    with harness.ctx.db.reader() as s:
        key = s.scalar(select(Job).where(Job.hash == hash_value)).inputs["audiofile"]["key"]
    orphan = f"temp/{uuid.uuid4().hex}/20200101000000-0123456789-gone.wav"
    harness.ctx.storage.put_file(orphan, harness.ctx.storage.path(key), move=False)
    assert sweep_orphans(harness.ctx.db, harness.ctx.storage, grace_seconds=-1) == 1
    assert harness.ctx.storage.exists(key) and not harness.ctx.storage.exists(orphan)
    assert not harness.ctx.storage.path(orphan).parent.exists()  # its folder went with it
