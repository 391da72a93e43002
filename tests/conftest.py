"""Shared fixtures: an app on a fresh data dir, accounts, synthesised audio, and an inline worker."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from openmvsep.api.app import create_app
from openmvsep.bootstrap import Services
from openmvsep.runner.executor import NoExecutor
from openmvsep.runner.worker import Worker
from openmvsep.service import accounts
from openmvsep.settings import Settings

from servers import seaweedfs  # noqa: F401  (any test may ask for a real S3 store)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def make_settings(tmp_path: Path, **overrides) -> Settings:
    base = dict(
        data_dir=tmp_path / "data",
        public_url="http://testserver",
        workers=0,
        rate_limit_per_minute=0,
        janitor_interval_seconds=3600,
        qc_default_dataset_tracks=0,
        precision="fp32",  # outputs compared exactly on any machine; `auto` has its own tests
    )
    base.update(overrides)
    return Settings(**base)


def stereo_mix(seconds: float = 3.0, rate: int = 44100, seed: int = 0) -> np.ndarray:
    """A centre-panned tone plus a hard-left and a hard-right source: (2, frames) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    centre = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    left = 0.2 * np.sin(2 * np.pi * 1250 * t)
    right = 0.05 * rng.standard_normal(t.size)
    return np.stack([centre + left, centre + right]).astype(np.float32)


def wav_bytes(audio: np.ndarray, rate: int = 44100, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.T, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


class Harness:
    """A TestClient over a real app (SQLite, local files) whose work runs when the test says so."""

    def __init__(self, settings: Settings, *, pages: bool = False):
        self.settings = settings
        self.ctx = Services(settings, executor=NoExecutor())  # the process's services, as the app holds them
        if pages:  # the app `serve` runs: the web page mounted beside the API
            from openmvsep.bootstrap.site import create_site

            self.app = create_site(self.ctx)
        else:
            self.app = create_app(self.ctx)
        self.client = TestClient(self.app)
        self.client.__enter__()
        self._worker: Worker | None = None

    @property
    def worker(self) -> Worker:
        if self._worker is None:
            self._worker = self.ctx.worker("test-worker")
        return self._worker

    def run_all(self, limit: int = 100) -> int:
        n = 0
        while n < limit and self.worker.run_next():
            n += 1
        return n

    def user(self, email: str = "u@example.com", *, credits: int = 0, premium: bool = False) -> str:
        with self.ctx.db.session() as s:
            return accounts.create_user(
                s, email=email, password="password123", credits=credits, premium=premium
            ).api_token

    def create(self, token: str | None, audio_bytes: bytes | None = None, filename: str = "song.wav", **fields) -> dict:
        data = {"sep_type": "55", "add_opt1": "dsp", "output_format": "4", **fields}
        if token is not None:
            data["api_token"] = token
        files = {"audiofile": (filename, audio_bytes, "audio/wav")} if audio_bytes is not None else None
        r = self.client.post("/api/separation/create", data=data, files=files)
        return {"status": r.status_code, **r.json()}

    def get(self, hash_value: str) -> dict:
        return self.client.get("/api/separation/get", params={"hash": hash_value}).json()

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture
def harness(tmp_path):
    h = Harness(make_settings(tmp_path))
    yield h
    h.close()


@pytest.fixture
def make_harness(tmp_path):
    made = []

    def factory(**overrides) -> Harness:
        h = Harness(make_settings(tmp_path / f"h{len(made)}", **overrides))
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()
