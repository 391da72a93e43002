"""A job's stems encoded one after another against side by side (the worker's ENCODE_THREADS), per format.

    .venv/bin/python bench/encode.py [--stems 4] [--seconds 240] [--threads 4] [--formats 0,3,2,1]

After a GPU separation the encoding of a multi-stem job's outputs is a large part of its time: the codecs
(LAME for MP3, FFmpeg's AAC, libsndfile's FLAC) run on the CPU, one stem at a time unless the worker encodes
them side by side. Each stem is a different synthetic stereo signal at 44.1 kHz, written whole with
`write_audio`, as the worker hands a separated stem to its writer. Prints seconds and the speed-up.
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue` (which concurrent.futures imports).
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from openmvsep.engine.audio import FORMATS, write_audio

RATE = 44100


def stem_signal(index: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(index)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * (110 * (index + 1)) * t)
    return np.stack([tone + 0.05 * rng.standard_normal(t.size) for _ in range(2)]).astype(np.float32)


def timed(stems: list[np.ndarray], fmt: int, folder: Path, threads: int) -> float:
    extension = FORMATS[fmt].extension
    jobs = [(folder / f"{threads}-{i}.{extension}", data) for i, data in enumerate(stems)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda job: write_audio(job[0], job[1], RATE, fmt), jobs))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stems", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--formats", default="0,3,2,1")
    args = parser.parse_args()
    stems = [stem_signal(i, args.seconds) for i in range(args.stems)]
    print(f"{args.stems} stereo stems of {args.seconds:g} s at {RATE} Hz, {os.cpu_count()} CPUs")
    print(f"{'format':28s} {'one by one s':>12s} {f'{args.threads} threads s':>12s} {'speed-up':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in (int(f) for f in args.formats.split(",")):
            sequential = timed(stems, fmt, Path(tmp), 1)
            parallel = timed(stems, fmt, Path(tmp), args.threads)
            print(f"{FORMATS[fmt].label:28s} {sequential:12.2f} {parallel:12.2f} {sequential / parallel:8.2f}x")


if __name__ == "__main__":
    main()
