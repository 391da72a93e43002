"""A header's length is a claim: a job is limited, priced and chunked by the length decoding gives, and a worker
decodes no more than that, whatever the headers say.

The lying files are real ones made here: audio encoded with libFLAC (soundfile) or LAME (PyAV), then the
length field of the header patched to claim a few seconds. Memory is measured as the peak resident size of a
child process that does the work, beside a child that does the same with an honest short file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from openmvsep.engine import audio
from openmvsep.store.models import Job, WorkItem

TESTS = Path(__file__).resolve().parent
RATE = 8000  # low rate, stereo silence: minutes of audio encode in milliseconds and compress to little
CLAIM_SECONDS = 5


def flac_of_silence(path: Path, seconds: float) -> Path:
    block = np.zeros((RATE * 60, 2), dtype=np.int16)
    left = int(seconds * RATE)
    with sf.SoundFile(path, "w", RATE, 2, format="FLAC", subtype="PCM_16") as f:
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= min(left, len(block))
    return path


def claim_flac_length(path: Path, frames: int) -> Path:
    """Patch STREAMINFO's 36-bit total-samples field: after 'fLaC' and the 4-byte block header come min/max block
    size (2+2 bytes) and min/max frame size (3+3), then 20 bits of rate, 3 of channels, 5 of bits per sample and
    the 36 of total samples, so the field is the low 36 bits of the 8 bytes at offset 18."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first block
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed >> 36 << 36) | frames
    data[18:26] = packed.to_bytes(8, "big")
    path.write_bytes(data)
    return path


def lying_flac(path: Path, seconds: float) -> Path:
    return claim_flac_length(flac_of_silence(path, seconds), CLAIM_SECONDS * RATE)


def lying_mp3(path: Path, seconds: float, claim_frames: int = 14) -> Path:
    """An MP3 (MPEG-2.5 at 8 kHz: 576 samples a frame) whose Info header's frame count claims about one second."""
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        stream.bit_rate = 16000
        tone = (3000 * np.sin(np.arange(int(seconds * RATE)) * 0.3)).astype(np.int16)
        for start in range(0, tone.size, RATE):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + RATE], format="s16p", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(path.read_bytes())
    tag = data.find(b"Info")
    assert tag > 0 and int.from_bytes(data[tag + 4 : tag + 8], "big") & 1  # the frame count is present
    data[tag + 8 : tag + 12] = claim_frames.to_bytes(4, "big")
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lying")
    return {
        "honest": flac_of_silence(folder / "honest.flac", CLAIM_SECONDS),
        "honest_20min": flac_of_silence(folder / "honest_20min.flac", 20 * 60),
        "honest_24min": flac_of_silence(folder / "honest_24min.flac", 24 * 60),
        "lying_24min": lying_flac(folder / "lying_24min.flac", 24 * 60),
        "lying_4h": lying_flac(folder / "lying_4h.flac", 4 * 3600),
        "lying_mp3": lying_mp3(folder / "lying.mp3", 60),
    }


def test_the_lying_files_claim_what_the_test_says(files):
    for name in ("lying_24min", "lying_4h"):
        with av.open(str(files[name])) as container:
            stream = container.streams.audio[0]
            assert float(stream.duration * stream.time_base) == CLAIM_SECONDS
    with av.open(str(files["lying_mp3"])) as container:
        stream = container.streams.audio[0]
        assert float(stream.duration * stream.time_base) < 1.1


@pytest.mark.parametrize(("name", "seconds"), [("lying_24min", 24 * 60), ("lying_mp3", 60)])
def test_probe_counts_what_the_stream_holds_not_what_the_header_claims(files, name, seconds):
    # A packet count includes the MP3 encoder's priming and padding, which decoding drops: 3 frames at 8 kHz.
    assert audio.probe(files[name]).duration == pytest.approx(seconds, abs=0.25)
    with pytest.raises(audio.TooLong):
        audio.probe(files[name], max_seconds=seconds / 2)


# ---------------------------------------------------------------------------------------------------- intake

# One child process probes the files in turn and reports its peak resident size after each: the peak after the
# honest short file is the baseline (imports and all), and whatever a lying file adds shows above it.
_INTAKE_CHILD = """
import json, sys
from pathlib import Path
from openmvsep.errors import UserError
from openmvsep.service.jobs.intake import Intake, Upload
from openmvsep.settings import Settings

data, limit, paths = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
intake = Intake(None, None, Settings(data_dir=data, max_input_seconds=limit), None)  # probe() reads only settings
for path in paths:
    try:
        answer = {"duration": intake.probe(Upload(Path(path), Path(path).name)).duration}
    except UserError as e:
        answer = {"refused": e.message}
    answer["peak_kb"] = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
    print(json.dumps(answer))
"""


def run_child(script: str, *args: object) -> list[dict]:
    """What the child printed, one JSON object a line."""
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=TESTS,  # conftest and its helpers import from here
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_intake_refuses_lying_files_past_the_limit_with_flat_memory(files, tmp_path):
    limit = 600  # a small limit keeps the count (and the test) short: it stops at 10 minutes of a 4-hour file
    names = ["honest", "lying_24min", "lying_4h", "honest_20min"]
    honest, *others = run_child(_INTAKE_CHILD, tmp_path, limit, *(files[name] for name in names))
    assert honest["duration"] == CLAIM_SECONDS
    answers = dict(zip(names[1:], others))
    for name in ("lying_24min", "lying_4h"):
        assert "refused" in answers[name], f"{name} was accepted as {answers[name].get('duration')} s"
        assert answers[name]["refused"] == "The audio file is too long (more than 10.0 min); the limit is 10 min"
        assert answers[name]["peak_kb"] - honest["peak_kb"] < 20_000, (name, answers[name], honest)
    # A file whose header is borne out past the limit is refused with the header's length, as before.
    assert answers["honest_20min"]["refused"] == "The audio file is too long (20.0 min); the limit is 10 min"


def test_a_lying_file_is_priced_and_chunked_as_an_honest_one_of_its_real_length(files, make_harness):
    h = make_harness(max_input_seconds=3600, chunk_threshold_seconds=600, chunk_seconds=300)
    jobs = {}
    for name in ("honest_24min", "lying_24min"):
        token = h.user(f"{name}@example.com", credits=1000)
        answer = h.create(token, files[name].read_bytes(), filename=f"{name}.flac")
        assert answer["status"] == 200, answer
        with h.ctx.db.reader() as s:
            job = s.scalar(select(Job).where(Job.hash == answer["data"]["hash"]))
            items = s.scalars(select(WorkItem).where(WorkItem.job_id == job.id).order_by(WorkItem.index)).all()
            jobs[name] = (job.duration, job.credits_charged, [(i.kind, i.start_frame, i.end_frame) for i in items])
    assert jobs["lying_24min"][0] == pytest.approx(24 * 60)
    assert jobs["lying_24min"] == jobs["honest_24min"]
    assert len(jobs["lying_24min"][2]) == 5  # 24 minutes in chunks of 5


# ---------------------------------------------------------------------------------------------------- worker

# One child process runs two jobs of the same honest short upload, the second after its stored input was replaced
# by 24 minutes of audio (a job of an older server, or a stream that decodes differently on the worker): the
# worker must read no further than the job was measured and priced at. Peak resident size after each job.
_WORKER_CHILD = """
import json, shutil, sys
from pathlib import Path
from sqlalchemy import select
from openmvsep.store.models import Job
from conftest import Harness, make_settings

data, upload, *stored = Path(sys.argv[1]), Path(sys.argv[2]), *map(Path, sys.argv[3:])
h = Harness(make_settings(data))
for index, decoded in enumerate(stored):
    answer = h.create(h.user(f"u{index}@example.com", credits=100), upload.read_bytes(), filename="song.flac")
    assert answer["status"] == 200, answer
    with h.ctx.db.reader() as s:
        job = s.scalar(select(Job).where(Job.hash == answer["data"]["hash"]))
    shutil.copyfile(decoded, h.ctx.storage.root / job.inputs["audiofile"]["key"])
    h.run_all()
    peak_kb = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
    print(json.dumps({"status": h.get(job.hash)["status"], "peak_kb": peak_kb}))
"""


def test_the_worker_decodes_no_more_than_the_job_was_measured_at(files, tmp_path):
    honest, swapped = run_child(_WORKER_CHILD, tmp_path, files["honest"], files["honest"], files["lying_24min"])
    assert honest["status"] == swapped["status"] == "done"
    # A decode of all 24 minutes holds 90 MB of samples alone (before the separation's own arrays).
    assert swapped["peak_kb"] - honest["peak_kb"] < 20_000, (swapped, honest)
