"""Scoring a submission against its dataset: SDR first (streamed, exact, seconds), the other metrics after.

The leaderboard SDR is QUALITY.md's global SDR. Two 16-bit PCM files are compared in integers: the sample
differences and energies are exact, and scaling by 2^-30 (soundfile's 1/32768, squared) is exact too, so the
result is the float64 definition without its rounding. Other encodings are read as float64, as the reference
code reads them. Files stream in blocks, so memory does not grow with track length.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import soundfile as sf

from openmvsep.quality import metrics
from openmvsep.quality.datasets import Dataset
from openmvsep.quality.submission import Submission, SubmissionError

BLOCK_FRAMES = 1 << 16  # small enough to stay in cache between the read and the two dot products
PCM16_SCALE = 2.0**-30  # (1/32768)^2: int16 energies -> soundfile's float energies
FRAMEWISE = "framewise_sdr"  # museval-style: median over 1-s frames per track, median over tracks
Progress = Callable[[int, int], None]


@dataclass
class Scores:
    stems: tuple[str, ...]
    tracks: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)  # song -> stem -> metric
    warnings: list[str] = field(default_factory=list)

    def metric_names(self) -> list[str]:
        names = {m for stems in self.tracks.values() for values in stems.values() for m in values}
        return [m for m in (*metrics.ALL_METRICS, FRAMEWISE) if m in names]

    def aggregate(self, stem: str, metric: str) -> float | None:
        """A stem's column: the mean over tracks (MVSep), or for framewise SDR the median (SiSEC's convention)."""
        values = [v for song in self.tracks.values()
                  if (v := song.get(stem, {}).get(metric)) is not None]
        if not values:
            return None
        return float(np.median(values)) if metric == FRAMEWISE else float(np.mean(values))

    def means(self) -> dict[str, dict[str, float | None]]:
        return {stem: {m: self.aggregate(stem, m) for m in self.metric_names()} for stem in self.stems}

    def to_json(self) -> dict:
        """`{"sdr": {stem: mean}, "tracks": {song: {stem: sdr}}, <metric>: {stem: aggregate}, ...}`."""
        out: dict = {"sdr": {s: self.aggregate(s, "sdr") for s in self.stems},
                     "tracks": {song: {s: v.get("sdr") for s, v in stems.items()}
                                for song, stems in self.tracks.items()}}
        for metric in self.metric_names():
            if metric != "sdr":
                out[metric] = {s: self.aggregate(s, metric) for s in self.stems}
        if len(self.metric_names()) > 1:
            out["track_metrics"] = self.tracks
        out["warnings"] = self.warnings
        return out


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _energies(dataset: Dataset, submission: Submission, song: str, stem: str) -> tuple[float, float]:
    """(Σ s², Σ (s − ŝ)²) over both channels, streamed."""
    with sf.SoundFile(dataset.reference_path(song, stem)) as ref, submission.open(song, stem) as est:
        exact = ref.subtype == est.subtype == "PCM_16"
        dtype = "int16" if exact else "float64"
        ref_sum, err_sum = (0, 0) if exact else (0.0, 0.0)
        while True:
            r = ref.read(BLOCK_FRAMES, dtype=dtype)
            e = est.read(BLOCK_FRAMES, dtype=dtype)
            if len(r) != len(e):
                raise SubmissionError(f"The audio of {song}_{stem} ends early: the file is truncated")
            if not len(r):
                break
            if exact:  # int16 -> float64 is exact and so are these sums (each block's total < 2^53)
                rf = r.astype(np.float64).ravel()
                d = np.subtract(e, r, dtype=np.float64).ravel()
                ref_sum += int(rf @ rf)
                err_sum += int(d @ d)
            else:
                rf, d = r.ravel(), (e - r).ravel()
                ref_sum += float(rf @ rf)
                err_sum += float(d @ d)
    if exact:
        return ref_sum * PCM16_SCALE, err_sum * PCM16_SCALE
    return ref_sum, err_sum


def score_sdr(dataset: Dataset, submission: Submission, *, threads: int = 2,
              progress: Progress | None = None) -> Scores:
    """The leaderboard numbers: global SDR of every (track, stem), streamed on `threads` threads."""
    pairs = [(song.name, stem) for song in dataset.songs for stem in submission.stems]
    scores = Scores(submission.stems, {song.name: {} for song in dataset.songs})
    done = 0
    with ThreadPoolExecutor(max(1, threads)) as pool:  # file reads and BLAS release the GIL
        for (song, stem), (ref_energy, err_energy) in zip(pairs, pool.map(
                lambda p: _energies(dataset, submission, *p), pairs)):
            scores.tracks[song][stem] = {"sdr": metrics.sdr_from_sums(ref_energy, err_energy)}
            if ref_energy == 0:
                scores.warnings.append(f"{song}: the {stem} reference is silent, so its SDR only measures the "
                                       "estimate's energy")
            done += 1
            if progress:
                progress(done, len(pairs))
    return scores


def _read(f: sf.SoundFile) -> np.ndarray:
    data = f.read(dtype="float64", always_2d=True)
    if len(data) != f.frames:
        raise SubmissionError(f"The audio of {f.name} ends early: the file is truncated")
    return data.T


def score_metrics(dataset: Dataset, submission: Submission, scores: Scores, *,
                  progress: Progress | None = None) -> Scores:
    """Add the secondary metrics and the framewise SDR to `scores`, one track at a time (all its stems in memory).

    The secondary metrics take MSST's rate constant whatever the dataset's rate, as MSST's get_metrics() does.
    """
    skipped = metrics.unavailable_metrics()
    scores.warnings.extend(f"{name} was not computed: {reason}" for name, reason in skipped.items())
    for i, song in enumerate(dataset.songs):
        with sf.SoundFile(dataset.mixture_path(song.name)) as f:
            mixture = _read(f)
        refs, ests = [], []
        for stem in submission.stems:
            with sf.SoundFile(dataset.reference_path(song.name, stem)) as f:
                refs.append(_read(f))
            with submission.open(song.name, stem) as f:
                ests.append(_read(f))
        frame_medians = metrics.median_framewise_sdr(np.stack(refs), np.stack(ests), dataset.sample_rate)
        for stem, ref, est, median in zip(submission.stems, refs, ests, frame_medians):
            values = scores.tracks[song.name].setdefault(stem, {})
            values.update(metrics.secondary_metrics(mixture, ref, est, metrics.MSST_SAMPLE_RATE, skip=skipped))
            values[FRAMEWISE] = _finite(median)
            if np.isnan(median):
                scores.warnings.append(f"{song.name}: no frame of {stem} could be scored framewise (silence)")
            elif np.isinf(median):
                scores.warnings.append(f"{song.name}: the {stem} estimate equals its reference in most frames "
                                       "(infinite framewise SDR)")
        if progress:
            progress(i + 1, len(dataset.songs))
    return scores
