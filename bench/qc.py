"""Quality Checker benchmark: score a 100-track × 4-stem × 180 s submission as the server does.

Prints the SDR-only seconds (target ≤ 30 s on 2 cores; from a cold page cache when the bench may drop it,
then again with the references cached), the all-metrics seconds (measured on a few tracks and
scaled to the whole submission unless --full-metrics), and the framewise SDR's speed against `museval` on one
track, with their largest difference.

    .venv/bin/python bench/qc.py [--tracks 100 --stems 4 --seconds 180] [--workdir DIR] [--keep]

The dataset and the submission are written once into --workdir (about 28 GB at the defaults) and reused by
later runs with the same shape; --keep leaves them there, otherwise they are deleted at the end.
"""

from __future__ import annotations

# ruff: noqa: E402
import os
import sys

# bench/queue.py would shadow the standard library's `queue` (which torch, httpx and concurrent.futures import)
# for every script run from this folder: the folder leaves the import path before anything else is imported.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import io
import json
import shutil
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from openmvsep.quality import metrics
from openmvsep.quality.datasets import load_dataset
from openmvsep.quality.scoring import score_metrics, score_sdr
from openmvsep.quality.submission import open_submission

STEMS = ("vocals", "bass", "drums", "other", "guitar", "piano")
RATE = 44100


def _signal(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Band-limited noise with a slow envelope: cheap to make, not trivially compressible, never silent."""
    noise = rng.standard_normal((frames, 2)).astype(np.float32)
    noise[1:] += 0.8 * noise[:-1]
    envelope = 0.3 + 0.7 * np.abs(np.sin(np.linspace(0, rng.uniform(20, 60), frames, dtype=np.float32)))[:, None]
    return noise * envelope * 2500


def build(workdir: Path, tracks: int, stems: tuple[str, ...], seconds: float) -> tuple[Path, Path]:
    shape = f"{tracks}x{len(stems)}x{seconds:g}"
    root, archive = workdir / f"dataset-{shape}", workdir / f"submission-{shape}.zip"
    if (root / "dataset.yaml").exists() and archive.exists():
        return root, archive
    shutil.rmtree(workdir, ignore_errors=True)
    root.mkdir(parents=True)
    frames = int(seconds * RATE)
    started = time.perf_counter()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for t in range(tracks):
            rng = np.random.default_rng(t)
            song = root / f"song_{t:03d}"
            song.mkdir()
            mixture = np.zeros((frames, 2), np.float32)
            for stem in stems:
                ref = _signal(rng, frames)
                mixture += ref
                sf.write(song / f"{stem}.wav", ref.astype(np.int16), RATE, subtype="PCM_16")
                est = np.clip(ref + rng.standard_normal(ref.shape).astype(np.float32) * 300, -32768, 32767)
                buf = io.BytesIO()  # a zip member cannot seek back to finish a WAV header
                sf.write(buf, est.astype(np.int16), RATE, subtype="PCM_16", format="WAV")
                z.writestr(f"song_{t:03d}_{stem}.wav", buf.getbuffer())
            sf.write(song / "mixture.wav", np.clip(mixture, -32768, 32767).astype(np.int16), RATE, subtype="PCM_16")
            print(f"\rwriting track {t + 1}/{tracks}", end="", file=sys.stderr, flush=True)
    (root / "dataset.yaml").write_text(
        json.dumps({"name": "Bench", "dataset_type": 0, "stems": list(stems), "sample_rate": RATE})
    )
    print(f"\rwrote {tracks} tracks in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return root, archive


def drop_page_cache() -> bool:
    """Start the SDR pass from disk, as a server that did not just write the files would (needs root)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def framewise_against_museval(seconds: float) -> tuple[float, float, float]:
    """(ours s, museval s, largest |difference| dB) on one 4-stem stereo track."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "quality"))
    from museval_oracle import museval_framewise_sdr  # museval's own metrics module, without ffmpeg

    rng = np.random.default_rng(7)
    frames = int(seconds * RATE)
    refs = rng.standard_normal((4, 2, frames))
    ests = refs + 0.3 * rng.standard_normal(refs.shape)
    started = time.perf_counter()
    ours = metrics.framewise_sdr(refs, ests, RATE)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    theirs = museval_framewise_sdr(refs, ests, RATE, RATE)
    museval_s = time.perf_counter() - started
    return ours_s, museval_s, float(np.nanmax(np.abs(ours - theirs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--stems", type=int, default=4, choices=range(1, len(STEMS) + 1))
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--threads", type=int, default=1, help="arithmetic threads of the SDR pass")
    parser.add_argument("--metrics-tracks", type=int, default=2, help="tracks to time the secondary metrics on")
    parser.add_argument("--full-metrics", action="store_true", help="score every track with every metric")
    parser.add_argument("--museval-seconds", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "openmvsep-bench-qc")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    root, archive = build(args.workdir, args.tracks, STEMS[: args.stems], args.seconds)
    zip_gb = archive.stat().st_size / 1e9
    try:
        dataset = load_dataset(root)
        cold = drop_page_cache()
        runs = []
        for _ in range(2):  # from a cold page cache where we may drop it, then with the references cached
            started = time.perf_counter()
            submission = open_submission(archive, dataset)
            scores = score_sdr(dataset, submission, threads=args.threads)
            runs.append(time.perf_counter() - started)
        sdr_s = runs[0]

        subset = dataset if args.full_metrics else replace(dataset, songs=dataset.songs[: args.metrics_tracks])
        started = time.perf_counter()
        score_metrics(subset, submission, scores)
        measured = time.perf_counter() - started
        all_s = sdr_s + measured * len(dataset.songs) / len(subset.songs)

        ours_s, museval_s, diff = framewise_against_museval(args.museval_seconds)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)

    pairs = len(dataset.songs) * len(submission.stems)
    print(
        f"submission: {len(dataset.songs)} tracks x {len(submission.stems)} stems x {args.seconds:g} s "
        f"({zip_gb:.1f} GB zip), {args.threads} threads"
    )
    print(
        f"SDR only:     {sdr_s:8.1f} s  {'from a cold page cache' if cold else 'page cache as the writing left it'}"
        f" ({sdr_s / pairs * 1000:.0f} ms per stem-track; target <= 30 s: {'met' if sdr_s <= 30 else 'NOT met'});"
        f" again: {runs[1]:.1f} s"
    )
    how = "measured" if args.full_metrics else f"measured on {len(subset.songs)} tracks, scaled"
    print(
        f"all metrics:  {all_s:8.1f} s  ({how}; {measured / (len(subset.songs) * len(submission.stems)):.2f} s "
        "per stem-track for the secondary metrics)"
    )
    print(
        f"framewise SDR, one 4-stem track of {args.museval_seconds:g} s: ours {ours_s * 1000:.1f} ms, "
        f"museval {museval_s:.1f} s, ratio {museval_s / ours_s:.0f}x faster, max |diff| {diff:.2e} dB"
    )
    print("mean SDR: " + ", ".join(f"{s} {v:.4f}" for s, v in scores.to_json()["sdr"].items()))


if __name__ == "__main__":
    main()
