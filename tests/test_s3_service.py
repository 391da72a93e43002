"""The service on S3-compatible storage (a real SeaweedFS): uploads, chunked work, downloads through the API
with ranges or straight from the store with presigned URLs, expiry, and a Quality Checker entry."""

from __future__ import annotations

import io
from datetime import timedelta

import httpx
import numpy as np
import soundfile as sf
from sqlalchemy import update

from openmvsep.runner.janitor import sweep_expired
from openmvsep.store.db import utcnow
from openmvsep.store.models import Job
from openmvsep.store.s3 import S3Storage

from conftest import Harness, make_settings, stereo_mix, wav_bytes


def _harness(tmp_path, seaweedfs, **overrides) -> Harness:
    bucket = seaweedfs.new_bucket()
    return Harness(
        make_settings(
            tmp_path,
            **bucket.settings(),
            chunk_threshold_seconds=2,
            chunk_seconds=1,
            chunk_overlap_seconds=0.1,
            **overrides,
        )
    )


def test_jobs_on_s3_download_through_the_api_with_ranges(tmp_path, seaweedfs):
    h = _harness(tmp_path, seaweedfs)
    try:
        assert isinstance(h.ctx.storage, S3Storage)
        token = h.user(credits=10, premium=True)
        mix = stereo_mix(3.5)
        hash_value = h.create(token, wav_bytes(mix), output_format="1")["data"]["hash"]  # wav 16-bit
        assert not (tmp_path / "data" / "storage").exists() or not any((tmp_path / "data" / "storage").rglob("*.wav"))
        h.run_all()
        done = h.get(hash_value)
        assert done["status"] == "done", done
        centre, wide = done["data"]["files"]
        whole = h.client.get(centre["url"])
        assert whole.status_code == 200 and len(whole.content) == centre["bytes"]
        assert whole.headers["accept-ranges"] == "bytes"
        audio, rate = sf.read(io.BytesIO(whole.content))
        assert rate == 44100 and audio.shape == (mix.shape[1], 2)
        part = h.client.get(centre["url"], headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == whole.content[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(whole.content)}"
        tail = h.client.get(centre["url"], headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == whole.content[-10:]
        assert h.client.get(centre["url"], headers={"Range": f"bytes={len(whole.content)}-"}).status_code == 416
        original = h.client.get(done["data"]["input_file"]["url"])
        assert original.status_code == 200 and original.content == wav_bytes(mix)
        assert h.client.get("/storage/processed/nothing.wav").status_code == 404
        # the chunk files of the distributed run are gone once merged
        assert list(h.ctx.storage.list("work")) == []

        with h.ctx.db.session() as s:
            s.execute(update(Job).values(expires_at=utcnow() - timedelta(hours=1)))
        assert sweep_expired(h.ctx.db, h.ctx.storage) == 1
        assert list(h.ctx.storage.list("processed")) == [] and list(h.ctx.storage.list("temp")) == []
    finally:
        h.close()


def test_presigned_urls_point_at_the_store(tmp_path, seaweedfs):
    h = _harness(tmp_path, seaweedfs, presigned_urls=True)
    try:
        token = h.user(credits=10, premium=True)
        hash_value = h.create(token, wav_bytes(stereo_mix(1.0)))["data"]["hash"]
        h.run_all()
        done = h.get(hash_value)
        for f in done["data"]["files"]:
            assert f["url"].startswith(seaweedfs.endpoint)
            got = httpx.get(f["url"])
            assert got.status_code == 200 and len(got.content) == f["bytes"]
            assert f["download"] in got.headers["content-disposition"]
        # the server's own links send clients to the store too
        folder, name = done["data"]["files"][0]["url"].split("?", 1)[0].rsplit("/", 2)[-2:]
        redirect = h.client.get(f"/storage/processed/{folder}/{name}", follow_redirects=False)
        assert redirect.status_code == 307 and redirect.headers["location"].startswith(seaweedfs.endpoint)
    finally:
        h.close()


def test_quality_checker_entry_scored_from_s3(tmp_path, seaweedfs):
    import zipfile

    from openmvsep.quality.synth import synthesize_dataset

    h = _harness(tmp_path, seaweedfs)
    try:
        dataset_dir = synthesize_dataset(tmp_path / "ds", tracks=2, seconds=2.0)
        h.ctx.quality.register_dataset(dataset_dir)
        dataset = h.ctx.quality.datasets()[0]
        zip_path = tmp_path / "sub.zip"
        with zipfile.ZipFile(zip_path, "w") as z:
            for song in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
                z.write(song / "mixture.wav", f"{song.name}_vocals.wav")
        token = h.user()
        r = h.client.post(
            "/api/quality_checker/add",
            data={
                "api_token": token,
                "algo_name": "mix as vocals",
                "dataset_type": str(dataset["dataset_type"]),
                "ensemble": "0",
                "password": "pw123456",
            },
            files={"zipfile": ("sub.zip", zip_path.read_bytes(), "application/zip")},
        )
        assert r.status_code == 200, r.text
        entry_id = r.json()["data"]["id"]
        assert h.client.get(dataset["mixtures"]).status_code == 200  # the public mixtures zip, from the store
        assert [k for k, _ in h.ctx.storage.list("qc")] == [f"qc/{entry_id}.zip"]
        h.run_all()
        entry = h.client.get("/api/quality_checker/entry", params={"id": entry_id}).json()["data"]
        assert entry["msg"] == "OK" and np.isfinite(entry["sdr_vocals"])
        assert list(h.ctx.storage.list("qc")) == []  # scored: the submission is not kept
    finally:
        h.close()
